"""Every model of the project lives here, one module per domain (DESIGN.md §2).

Only ``dagcore.store`` queries these models; everything else calls store functions.
"""

from dagcore.models.accounts import AccessToken, Device, LoginToken, RefreshToken, User
from dagcore.models.console import AdminTotp, ConsoleSession, RatelimitOverride
from dagcore.models.directory import ContentReport, RoomAlias
from dagcore.models.e2e import (
    CrossSigningKey,
    CrossSigningSignature,
    DeviceKeys,
    DeviceListChange,
    FallbackKey,
    OneTimeKey,
    RemoteCrossSigningKey,
    RemoteDevice,
    RemoteDeviceList,
)
from dagcore.models.ephemeral import Presence, Receipt, TypingNotice
from dagcore.models.events import (
    BackwardExtremity,
    CurrentStateEvent,
    Event,
    EventAuthEdge,
    EventEdge,
    StateGroup,
    StateGroupEntry,
)
from dagcore.models.federation import (
    FederationDestination,
    FederationEphemeralEdu,
    FederationOutboxEdu,
    FederationOutboxEntry,
    InboundPdu,
    ReceivedTransaction,
    RemoteServerKey,
    ServerSigningKey,
    WellKnownDelegation,
)
from dagcore.models.key_backup import KeyBackupSession, KeyBackupVersion
from dagcore.models.media import LocalMedia, MediaThumbnail, RemoteMedia, RemoteMediaThumbnail, UrlPreview
from dagcore.models.operations import (
    AdminJob,
    AuditEntry,
    CheckResult,
    DagRepair,
    ProcessHeartbeat,
    ScheduledJobRun,
)
from dagcore.models.push import Pusher, PushRule, UnreadCounter
from dagcore.models.rooms import BlockedRoom, ForgottenRoom, Room, RoomMembership, RoomServer
from dagcore.models.streams import StreamCounter
from dagcore.models.to_device import ReceivedToDeviceMessage, ToDeviceMessage
from dagcore.models.txns import ClientTxn
from dagcore.models.uia import RegistrationToken, UiaSession
from dagcore.models.userdata import AccountData, RemoteProfileCache, UserFilter

__all__ = [
    "AccessToken",
    "AccountData",
    "AdminJob",
    "AdminTotp",
    "AuditEntry",
    "BackwardExtremity",
    "BlockedRoom",
    "CheckResult",
    "ClientTxn",
    "ConsoleSession",
    "ContentReport",
    "CrossSigningKey",
    "CrossSigningSignature",
    "CurrentStateEvent",
    "DagRepair",
    "Device",
    "DeviceKeys",
    "DeviceListChange",
    "Event",
    "EventAuthEdge",
    "EventEdge",
    "FallbackKey",
    "FederationDestination",
    "FederationEphemeralEdu",
    "FederationOutboxEdu",
    "FederationOutboxEntry",
    "ForgottenRoom",
    "InboundPdu",
    "KeyBackupSession",
    "KeyBackupVersion",
    "LocalMedia",
    "LoginToken",
    "MediaThumbnail",
    "OneTimeKey",
    "Presence",
    "ProcessHeartbeat",
    "PushRule",
    "Pusher",
    "RatelimitOverride",
    "Receipt",
    "ReceivedToDeviceMessage",
    "ReceivedTransaction",
    "RefreshToken",
    "RegistrationToken",
    "RemoteCrossSigningKey",
    "RemoteDevice",
    "RemoteDeviceList",
    "RemoteMedia",
    "RemoteMediaThumbnail",
    "RemoteProfileCache",
    "RemoteServerKey",
    "Room",
    "RoomAlias",
    "RoomMembership",
    "RoomServer",
    "ScheduledJobRun",
    "ServerSigningKey",
    "StateGroup",
    "StateGroupEntry",
    "StreamCounter",
    "ToDeviceMessage",
    "TypingNotice",
    "UiaSession",
    "UnreadCounter",
    "UrlPreview",
    "User",
    "UserFilter",
    "WellKnownDelegation",
]
