"""One module per area of ``doctor``'s checks; each ``check_*`` returns a :class:`dagcore.doctor.Verdict`."""
