"""A real client library (matrix-nio) drives registration, login, devices, profile and logout."""

from __future__ import annotations

import asyncio
import secrets

import nio

PASSWORD = "correct horse battery"


async def _journey(base_url: str) -> None:
    name = f"nio{secrets.token_hex(4)}"
    phone = nio.AsyncClient(base_url, "")
    laptop = nio.AsyncClient(base_url, name)
    try:
        registered = await phone.register(name, PASSWORD, device_name="nio phone")
        assert isinstance(registered, nio.RegisterResponse), registered
        user_id = registered.user_id
        assert user_id == f"@{name}:localhost"

        me = await phone.whoami()
        assert isinstance(me, nio.WhoamiResponse), me
        assert (me.user_id, me.device_id, me.is_guest) == (user_id, phone.device_id, False)

        set_name = await phone.set_displayname("Nio Phone Owner")
        assert isinstance(set_name, nio.ProfileSetDisplayNameResponse), set_name
        got = await phone.get_displayname(user_id)
        assert isinstance(got, nio.ProfileGetDisplayNameResponse) and got.displayname == "Nio Phone Owner"

        wrong = await laptop.login("not the password", device_name="nio laptop")
        assert isinstance(wrong, nio.LoginError) and wrong.status_code == "M_FORBIDDEN"
        logged_in = await laptop.login(PASSWORD, device_name="nio laptop")
        assert isinstance(logged_in, nio.LoginResponse), logged_in
        assert logged_in.user_id == user_id and logged_in.device_id != phone.device_id

        devices = await phone.devices()
        assert isinstance(devices, nio.DevicesResponse), devices
        names = {d.id: d.display_name for d in devices.devices}
        assert names == {phone.device_id: "nio phone", laptop.device_id: "nio laptop"}

        # Deleting the laptop needs user-interactive auth: nio first learns the flows...
        needs_auth = await phone.delete_devices([laptop.device_id])
        assert isinstance(needs_auth, nio.DeleteDevicesAuthResponse), needs_auth
        assert {"stages": ["m.login.password"]} in needs_auth.flows
        auth = {
            "type": "m.login.password",
            "user": user_id,
            "password": PASSWORD,
            "session": needs_auth.session,
        }
        deleted = await phone.delete_devices([laptop.device_id], auth)
        assert isinstance(deleted, nio.DeleteDevicesResponse), deleted
        # ...and the laptop's token is dead at once.
        dead = await laptop.whoami()
        assert isinstance(dead, nio.WhoamiError) and dead.status_code == "M_UNKNOWN_TOKEN"

        out = await phone.logout()
        assert isinstance(out, nio.LogoutResponse), out
        phone.access_token = registered.access_token  # nio forgets it; the server must refuse it
        after = await phone.whoami()
        assert isinstance(after, nio.WhoamiError) and after.status_code == "M_UNKNOWN_TOKEN"
    finally:
        await phone.close()
        await laptop.close()


def test_nio_registers_logs_in_manages_devices_and_logs_out(dagma_server) -> None:
    asyncio.run(_journey(dagma_server.base_url))
