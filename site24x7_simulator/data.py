"""The fake MSP's data set: customers, monitor groups and monitors, fixed by the seed.

Customer ``i`` is drawn from ``random.Random(f"{seed}/customer/{i}")`` (only uniqueness retries
depend on the customers before it), so the first 40 customers of a 5,000-customer run are the
40 customers of a 40-customer run with the same seed. MSP credentials come from
``random.Random(seed)``.
"""

from __future__ import annotations

import base64
import random
import re
import string
from dataclasses import dataclass, field

DOWN, UP, TROUBLE, CRITICAL = 0, 1, 2, 3
SUSPENDED, MAINTENANCE, DISCOVERY, CONFIG_ERROR = 5, 7, 9, 10
STATUS_NAMES = {
    DOWN: "Down",
    UP: "Up",
    TROUBLE: "Trouble",
    CRITICAL: "Critical",
    SUSPENDED: "Suspended",
    MAINTENANCE: "Maintenance",
    DISCOVERY: "Discovery",
    CONFIG_ERROR: "Configuration Error",
}
# Worst first: Down > Critical > Trouble > Config Error > Maintenance > Discovery > Suspended > Up.
_SEVERITY = {
    DOWN: 80,
    CRITICAL: 70,
    TROUBLE: 60,
    CONFIG_ERROR: 50,
    MAINTENANCE: 40,
    DISCOVERY: 30,
    SUSPENDED: 20,
    UP: 10,
}
_UNKNOWN_SEVERITY = 45  # codes outside the table (4, 6, 8, ...) rank just above Maintenance
HEALTHY_SHARE = 0.6  # customers whose monitors all start Up

_INITIAL_WEIGHTS = {
    UP: 820,
    TROUBLE: 60,
    DOWN: 40,
    CRITICAL: 30,
    MAINTENANCE: 15,
    SUSPENDED: 15,
    CONFIG_ERROR: 10,
    DISCOVERY: 10,
}

# fmt: off
_FIRST = (
    "Acme", "Alder", "Apex", "Arcadia", "Atlas", "Aurora", "Beacon", "Birch", "Blue", "Bright",
    "Cascade", "Cedar", "Cobalt", "Copper", "Crescent", "Delta", "Ember", "Evergreen",
    "Falcon", "Fjord", "Granite", "Harbor", "Helios", "Horizon", "Indigo", "Iron", "Juniper",
    "Keystone", "Lakeside", "Laurel", "Linden", "Lumen", "Maple", "Meridian", "Nimbus",
    "North", "Northwind", "Oak", "Orchid", "Pacific", "Pinnacle", "Polar", "Prairie", "Quartz",
    "Redwood", "Ridge", "Riverside", "Sable", "Sierra", "Silver", "Summit", "Sunrise",
    "Tidewater", "Trident", "Vertex", "Willow", "Zenith",
)
_SECOND = (
    "Accounting", "Analytics", "Architects", "Bakery", "Builders", "Capital", "Clinic",
    "Consulting", "Dental", "Design", "Engineering", "Farms", "Foods", "Freight", "Health",
    "Hotels", "Insurance", "Labs", "Legal", "Logistics", "Manufacturing", "Media", "Medical",
    "Motors", "Partners", "Pharma", "Plastics", "Print", "Properties", "Realty", "Retail",
    "Robotics", "Solutions", "Systems", "Textiles", "Trading", "Travel", "Ventures",
    "Veterinary", "Works",
)
# fmt: on
_SUFFIX = ("Ltd", "GmbH", "Inc", "LLC", "BV", "AG", "SA", "Pty Ltd", "AB", "Group")

_GROUP_NAMES = (
    "Websites",
    "Email",
    "Office network",
    "Servers",
    "Databases",
    "VPN",
    "DNS",
    "ERP",
    "Backups",
    "Branch office",
    "Cloud",
    "Firewalls",
    "Printers",
    "APIs",
    "Telephony",
    "File shares",
    "CRM",
    "Web shop",
)
_SUBGROUP_NAMES = ("EU", "US", "Staging", "Production", "Internal", "Public", "HQ", "Warehouse")

# monitor_type -> (name pattern, attribute_key, attribute_label, unit, value range)
MONITOR_TYPES = {
    "URL": ("www.{d}", "response_time", "Response Time", "ms", (80, 900)),
    "HOMEPAGE": ("{d} homepage", "response_time", "Page Load Time", "ms", (300, 3000)),
    "REALBROWSER": ("{d} login flow", "transaction_time", "Transaction Time", "ms", (2000, 20000)),
    "RESTAPI": ("api.{d}/health", "response_time", "Response Time", "ms", (40, 800)),
    "SERVER": ("srv-{h}", "cpu_used", "CPU", "%", (2, 95)),
    "PING": ("gw.{d}", "response_time", "Response Time", "ms", (1, 80)),
    "PORT": ("{h}.{d}:443", "response_time", "Response Time", "ms", (5, 200)),
    "DNS": ("dns {d}", "response_time", "Response Time", "ms", (5, 150)),
    "SSL_CERT": ("{d} certificate", "days_to_expire", "Days to Expire", "days", (5, 360)),
    "SMTP": ("mail.{d}", "response_time", "Response Time", "ms", (20, 400)),
}
_HOSTS = ("app", "db", "web", "files", "mail", "dc", "erp", "vpn", "backup", "print")


def severity(status: int) -> int:
    return _SEVERITY.get(status, _UNKNOWN_SEVERITY)


def worst(statuses) -> int:
    return max(statuses, key=severity, default=UP)


@dataclass
class Monitor:
    monitor_id: str
    name: str
    monitor_type: str
    status: int
    value: int  # the attribute_value shown while the monitor is not Down
    poll_offset: int  # seconds between "now" and last_polled_time


@dataclass
class Group:
    group_id: str
    name: str
    top_group: bool
    parent_group_id: str | None
    monitors: list[Monitor] = field(default_factory=list)

    @property
    def status(self) -> int:
        return worst(m.status for m in self.monitors)

    @property
    def error_monitors(self) -> int:
        return sum(1 for m in self.monitors if m.status != UP)


@dataclass
class Customer:
    name: str
    portal_name: str
    portal_id: str
    zaid: str
    zaaid: str
    user_id: str
    zuid: str  # the portal user's id, the middle part of its authtokens
    email: str
    password: str
    domain: str
    groups: list[Group] = field(default_factory=list)

    def monitors(self):
        for group in self.groups:
            yield from group.monitors


@dataclass(frozen=True)
class Credentials:
    msp_authtoken: str
    client_id: str
    client_secret: str
    grant_code: str


@dataclass
class Dataset:
    customers: list[Customer]
    credentials: Credentials


class _Unique:
    """Draws values until one is new, so ids never collide across customers."""

    def __init__(self):
        self.seen: set[str] = set()

    def draw(self, make):
        for _ in range(1000):
            value = make()
            if value not in self.seen:
                self.seen.add(value)
                return value
        raise RuntimeError("could not draw a unique value")


@dataclass
class _Pools:
    names: _Unique = field(default_factory=_Unique)
    portals: _Unique = field(default_factory=_Unique)
    ids: _Unique = field(default_factory=_Unique)


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet=string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _company_name(rng: random.Random, pools: _Pools) -> str:
    def make():
        first, suffix = rng.choice(_FIRST), rng.choice(_SUFFIX)
        if rng.random() < 0.15:
            return f"{first} {suffix}"
        return f"{first} {rng.choice(_SECOND)} {suffix}"

    try:
        return pools.names.draw(make)
    except RuntimeError:  # only with far more customers than name combinations
        return pools.names.draw(lambda: f"{make()} {_digits(rng, 4)}")


_LEGAL_FORMS = {"ltd", "gmbh", "inc", "llc", "bv", "ag", "sa", "pty", "ab"}


def _slug(name: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", "", name.lower()).split()
    kept = [w for w in words if w not in _LEGAL_FORMS]
    return "".join(kept or words)


def _portal_name(rng: random.Random, name: str, pools: _Pools) -> str:
    base = _slug(name)
    if base not in pools.portals.seen:
        pools.portals.seen.add(base)
        return base
    return pools.portals.draw(lambda: f"{base}{rng.randint(2, 999)}")


def _monitor(rng: random.Random, customer_domain: str, pools: _Pools) -> Monitor:
    monitor_type = rng.choice(list(MONITOR_TYPES))
    pattern, _key, _label, _unit, (low, high) = MONITOR_TYPES[monitor_type]
    name = pattern.format(d=customer_domain, h=f"{rng.choice(_HOSTS)}-{rng.randint(1, 19):02d}")
    status = rng.choices(list(_INITIAL_WEIGHTS), weights=list(_INITIAL_WEIGHTS.values()))[0]
    return Monitor(
        monitor_id=pools.ids.draw(lambda: _digits(rng, 17)),
        name=name,
        monitor_type=monitor_type,
        status=status,
        value=rng.randint(low, high),
        poll_offset=rng.randint(5, 299),
    )


def _groups(rng: random.Random, domain: str, pools: _Pools) -> list[Group]:
    names = rng.sample(_GROUP_NAMES, rng.randint(1, 15))
    groups: list[Group] = []
    for index, name in enumerate(names):
        tops = [g for g in groups if g.top_group]
        parent = rng.choice(tops) if index and rng.random() < 0.2 else None
        if parent:
            name = f"{parent.name} - {rng.choice(_SUBGROUP_NAMES)}"
        group = Group(
            group_id=pools.ids.draw(lambda: _digits(rng, rng.choice((14, 15, 17)))),
            name=name,
            top_group=parent is None,
            parent_group_id=parent.group_id if parent else None,
        )
        group.monitors = [_monitor(rng, domain, pools) for _ in range(rng.randint(1, 8))]
        groups.append(group)
    return groups


def _customer(seed: int, index: int, pools: _Pools) -> Customer:
    rng = random.Random(f"{seed}/customer/{index}")
    name = _company_name(rng, pools)
    portal_name = _portal_name(rng, name, pools)
    domain = f"{portal_name}.example.com"
    customer = Customer(
        name=name,
        portal_name=portal_name,
        portal_id=pools.ids.draw(lambda: _digits(rng, 11)),
        zaid=pools.ids.draw(lambda: base64.b64encode(rng.randbytes(16)).decode()),
        zaaid=pools.ids.draw(lambda: _digits(rng, 9)),
        user_id=pools.ids.draw(lambda: _digits(rng, 17)),
        zuid=_digits(rng, 11),
        email=f"it@{domain}",
        password=_alnum(rng, 14),
        domain=domain,
        groups=_groups(rng, domain, pools),
    )
    # Like a real MSP, most customers are all green: the healthy share is drawn from its own
    # stream, so names, ids and the troubled customers' statuses stay as the seed made them.
    if random.Random(f"{seed}/health/{index}").random() < HEALTHY_SHARE:
        for monitor in customer.monitors():
            monitor.status = UP
    return customer


def _credentials(seed: int) -> Credentials:
    rng = random.Random(seed)
    upper = string.ascii_uppercase + string.digits
    return Credentials(
        msp_authtoken=_hex(rng, 32),
        client_id="1000." + _alnum(rng, 30, upper),
        client_secret=_hex(rng, 42),
        grant_code=f"1000.{_hex(rng, 32)}.{_hex(rng, 32)}",
    )


def generate(customers: int, seed: int) -> Dataset:
    """Build the whole data set for ``customers`` customers from ``seed``."""
    pools = _Pools()
    return Dataset(
        customers=[_customer(seed, i, pools) for i in range(customers)],
        credentials=_credentials(seed),
    )
