"""Server-server plumbing shared by Tribune and Embassy: discovery, the signed client, the keyring."""
