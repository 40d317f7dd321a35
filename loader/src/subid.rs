//! Subordinate id ranges (`/etc/subuid`, `/etc/subgid`) and the id maps built from them, as
//! rootless podman builds them. Pure: no I/O, shared by the loader (runs, extraction) and the
//! packager (`oci2bin cache rm|prune` of entries owned by subordinate ids).

/// One line of an id map: `count` ids from `inside` in the namespace are `outside` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The ranges `(start, count)` of `/etc/subuid`-format `text` that belong to the user `name` or
/// to the numeric `id`, in file order. Comments, blank and malformed lines and empty ranges are
/// skipped, as shadow's own parser skips them.
pub fn ranges(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || !(Some(owner) == name || owner == id) {
                return None;
            }
            let (start, count): (u32, u32) = (start.parse().ok()?, count.parse().ok()?);
            // A range that would wrap past u32::MAX is not usable.
            (count > 0 && start.checked_add(count - 1).is_some()).then_some((start, count))
        })
        .collect()
}

/// The map that puts the caller's own host id `own` at `own_inside` and fills the ids from 0
/// up around it with the subordinate `ranges`, in order: rootless podman's default map with
/// `own_inside` 0, its `--userns=keep-id` map with the caller's own id. Sorted by `inside`.
pub fn build_map(own: u32, own_inside: u32, ranges: &[(u32, u32)]) -> Vec<IdMap> {
    let mut map = vec![IdMap {
        inside: own_inside,
        outside: own,
        count: 1,
    }];
    let mut next: u32 = 0;
    for &(mut start, mut count) in ranges {
        while count > 0 {
            if next == own_inside {
                let Some(n) = next.checked_add(1) else {
                    break;
                };
                next = n;
                continue;
            }
            let room = if next < own_inside {
                own_inside - next
            } else {
                u32::MAX - next
            };
            let len = count.min(room);
            if len == 0 {
                break;
            }
            map.push(IdMap {
                inside: next,
                outside: start,
                count: len,
            });
            next += len;
            start += len;
            count -= len;
        }
    }
    map.sort_by_key(|m| m.inside);
    map
}

/// Whether `map` maps the namespace id `id`.
pub fn covers(map: &[IdMap], id: u32) -> bool {
    map.iter()
        .any(|m| id >= m.inside && id - m.inside < m.count)
}

/// The arguments `newuidmap PID` / `newgidmap PID` take after the pid.
pub fn map_args(map: &[IdMap]) -> Vec<String> {
    map.iter()
        .flat_map(|m| [m.inside, m.outside, m.count])
        .map(|n| n.to_string())
        .collect()
}

/// A short text naming a map, for cache keys: `0:1000:1,1:100000:65536`.
pub fn map_text(map: &[IdMap]) -> String {
    map.iter()
        .map(|m| format!("{}:{}:{}", m.inside, m.outside, m.count))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str = "# comment\n\
        alice:100000:65536\n\
        bob:165536:65536\n\
        1002:231072:1000\n\
        alice:300000:10\n\
        broken line\n\
        carol:x:5\n\
        dave:400000:0\n\
        eve:4294967295:2\n";

    #[test]
    fn ranges_by_name_or_uid_in_file_order() {
        assert_eq!(
            ranges(SUBUID, Some("alice"), 1000),
            [(100000, 65536), (300000, 10)]
        );
        assert_eq!(ranges(SUBUID, Some("bob"), 1001), [(165536, 65536)]);
        // By number when the name has no line (or the user has no name).
        assert_eq!(ranges(SUBUID, Some("zed"), 1002), [(231072, 1000)]);
        assert_eq!(ranges(SUBUID, None, 1002), [(231072, 1000)]);
        assert_eq!(ranges(SUBUID, Some("frank"), 1003), []);
        // Malformed, empty and wrapping ranges are skipped.
        assert_eq!(ranges(SUBUID, Some("carol"), 9), []);
        assert_eq!(ranges(SUBUID, Some("dave"), 9), []);
        assert_eq!(ranges(SUBUID, Some("eve"), 9), []);
        assert_eq!(ranges("", Some("alice"), 1000), []);
        assert_eq!(ranges(" alice:1:2 \n", Some("alice"), 1000), [(1, 2)]);
    }

    fn m(inside: u32, outside: u32, count: u32) -> IdMap {
        IdMap {
            inside,
            outside,
            count,
        }
    }

    #[test]
    fn the_default_map_is_podmans_root_then_the_range() {
        let map = build_map(1000, 0, &[(100000, 65536)]);
        assert_eq!(map, [m(0, 1000, 1), m(1, 100000, 65536)]);
        assert_eq!(map_args(&map), ["0", "1000", "1", "1", "100000", "65536"]);
        assert_eq!(map_text(&map), "0:1000:1,1:100000:65536");
        assert!(covers(&map, 65536) && !covers(&map, 65537));
        // Several ranges follow one another.
        let map = build_map(1000, 0, &[(100000, 10), (300000, 5)]);
        assert_eq!(map, [m(0, 1000, 1), m(1, 100000, 10), m(11, 300000, 5)]);
        // No range: the caller alone.
        assert_eq!(build_map(1000, 0, &[]), [m(0, 1000, 1)]);
    }

    #[test]
    fn keep_id_puts_the_caller_at_its_own_id_and_the_range_around_it() {
        let map = build_map(1000, 1000, &[(100000, 65536)]);
        assert_eq!(
            map,
            [m(0, 100000, 1000), m(1000, 1000, 1), m(1001, 101000, 64536)]
        );
        assert!(covers(&map, 0) && covers(&map, 1000) && covers(&map, 65536));
        assert!(!covers(&map, 65537));
        // A range smaller than the id: the caller's id sits above a gap.
        let map = build_map(1000, 1000, &[(100000, 10)]);
        assert_eq!(map, [m(0, 100000, 10), m(1000, 1000, 1)]);
        // The split falls inside the second range.
        let map = build_map(15, 15, &[(100000, 10), (300000, 10)]);
        assert_eq!(
            map,
            [
                m(0, 100000, 10),
                m(10, 300000, 5),
                m(15, 15, 1),
                m(16, 300005, 5)
            ]
        );
    }
}
