"""Site24x7 / Zoho API client: strings and dataclasses in and out, no Django.

See docs/site24x7-wire-contract.md for the wire contract this client follows.
"""

from .client import (
    CURRENT_STATUS,
    MONITOR_GROUPS_STATUS,
    SELECTOR_VIAS,
    STATUS_SOURCES,
    ApiCall,
    Site24x7Client,
)
from .datacentres import DATA_CENTRES, DataCentre, get_data_centre
from .errors import (
    AuthError,
    ConfigurationError,
    LoginError,
    MintLimitError,
    NotFoundError,
    ResponseError,
    Site24x7Error,
    ThrottledError,
    TokenLimitError,
    TransientError,
    UnknownTokenError,
)
from .http import RawAnswer
from .parsing import (
    parse_current_status,
    parse_monitor_groups_config,
    parse_monitor_groups_status,
    parse_msp_customers,
    parse_msp_monitors_status,
    parse_portals,
)
from .redact import mask_secret
from .status import STATUS_SEVERITY, Status, parse_status, worst_status
from .types import AccessToken, Auth, GroupStatus, MspCustomer, OAuthTokens, Portal

__all__ = [
    "CURRENT_STATUS",
    "DATA_CENTRES",
    "MONITOR_GROUPS_STATUS",
    "SELECTOR_VIAS",
    "STATUS_SEVERITY",
    "STATUS_SOURCES",
    "AccessToken",
    "ApiCall",
    "Auth",
    "AuthError",
    "ConfigurationError",
    "DataCentre",
    "GroupStatus",
    "LoginError",
    "MintLimitError",
    "MspCustomer",
    "NotFoundError",
    "OAuthTokens",
    "Portal",
    "RawAnswer",
    "ResponseError",
    "Site24x7Client",
    "Site24x7Error",
    "Status",
    "ThrottledError",
    "TokenLimitError",
    "TransientError",
    "UnknownTokenError",
    "get_data_centre",
    "mask_secret",
    "parse_current_status",
    "parse_monitor_groups_config",
    "parse_monitor_groups_status",
    "parse_msp_customers",
    "parse_msp_monitors_status",
    "parse_portals",
    "parse_status",
    "worst_status",
]
