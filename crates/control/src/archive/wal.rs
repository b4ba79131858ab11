//! WAL positions, segment names and where archived things are stored.

use std::fmt;

use crate::error::ControlError;

/// The physical replication slot the keeper holds on each archived server: WAL is kept on
/// the server until the segment holding it is stored (the keeper advances the slot itself).
pub const SLOT: &str = "tenancy_wal_archive";

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl std::str::FromStr for Lsn {
    type Err = ControlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ControlError::Corrupt(format!("not a WAL position: {text:?}"));
        let (high, low) = text.split_once('/').ok_or_else(bad)?;
        let high = u64::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u64::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Lsn((high << 32) | low))
    }
}

/// A server's WAL segment geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// `wal_segment_size` in bytes (a power of two, 1 MiB to 1 GiB).
    pub bytes: u64,
}

impl Segments {
    pub fn new(bytes: u64) -> Result<Self, ControlError> {
        if !bytes.is_power_of_two() || !(1 << 20..=1 << 30).contains(&bytes) {
            return Err(ControlError::Corrupt(format!(
                "wal_segment_size {bytes} is not a power of two from 1 MiB to 1 GiB"
            )));
        }
        Ok(Self { bytes })
    }

    fn per_xlogid(self) -> u64 {
        0x1_0000_0000 / self.bytes
    }

    /// The segment holding `lsn`.
    pub fn of(self, lsn: Lsn) -> u64 {
        lsn.0 / self.bytes
    }

    /// Where segment `segno` ends (the next one starts).
    pub fn end(self, segno: u64) -> Lsn {
        Lsn((segno + 1) * self.bytes)
    }

    /// The file name of segment `segno` on `timeline` (`000000010000000000000003`).
    pub fn name(self, timeline: u32, segno: u64) -> String {
        format!(
            "{timeline:08X}{:08X}{:08X}",
            segno / self.per_xlogid(),
            segno % self.per_xlogid()
        )
    }

    /// The timeline and segment of a complete segment's file name; `None` for anything else
    /// (a `.partial` segment, a history file).
    pub fn parse(self, name: &str) -> Option<(u32, u64)> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let timeline = u32::from_str_radix(&name[0..8], 16).ok()?;
        let high = u64::from_str_radix(&name[8..16], 16).ok()?;
        let low = u64::from_str_radix(&name[16..24], 16).ok()?;
        (low < self.per_xlogid()).then_some((timeline, high * self.per_xlogid() + low))
    }
}

/// Where a segment is stored: a name of its own per upload, so that a keeper taking over that
/// stores a segment again never overwrites the object the catalog recorded.
pub fn segment_key(server: &tenancy_core::ServerId, name: &str) -> String {
    format!(
        "wal/{server}/segments/{name}-{}.age",
        uuid::Uuid::new_v4().simple()
    )
}

/// Where a base backup is stored.
pub fn base_backup_key(server: &tenancy_core::ServerId, id: uuid::Uuid) -> String {
    format!("wal/{server}/base/{id}.tar.age")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_and_positions_are_postgresqls() {
        let segments = Segments::new(16 << 20).unwrap();
        let lsn: Lsn = "0/3000028".parse().unwrap();
        assert_eq!(segments.of(lsn), 3);
        assert_eq!(segments.name(1, 3), "000000010000000000000003");
        assert_eq!(segments.end(3).to_string(), "0/4000000");
        assert_eq!(segments.parse("000000010000000000000003"), Some((1, 3)));
        // 256 segments of 16 MiB per "xlogid": the next one after FF is 1/00.
        assert_eq!(segments.name(2, 256), "000000020000000100000000");
        assert_eq!(segments.parse("000000020000000100000000"), Some((2, 256)));
        assert_eq!(segments.parse("000000010000000000000003.partial"), None);
        assert_eq!(segments.parse("00000002.history"), None);
        assert_eq!("1/A0".parse::<Lsn>().unwrap(), Lsn((1 << 32) | 0xA0));
        assert!(Segments::new(3 << 20).is_err());
    }
}
