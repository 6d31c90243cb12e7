//! `tinyvr-init --burn THREADS MB`: a neighbour that only burns. Each
//! thread walks its share of an MB buffer, reading and writing every cache
//! line, for ever: a CPU and memory-bandwidth load with no network at all
//! (a router-less neighbour's service, started by its init after READY).

/// What to burn, from the words after `--burn`.
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct Burn {
    pub threads: u32,
    pub memory_mb: u32,
}

pub const MAX_THREADS: u32 = 64;
pub const MAX_MB: u32 = 4096;

impl Burn {
    /// From `THREADS MB` (the words after `--burn`, nothing more).
    pub fn parse_words(words: &[String]) -> Result<Burn, String> {
        if words.len() > 2 {
            return Err(format!(
                "--burn: {:?}: expected THREADS MB and nothing after them",
                words[2]
            ));
        }
        Burn::parse(
            words.first().map(String::as_str),
            words.get(1).map(String::as_str),
        )
    }

    pub fn parse(threads: Option<&str>, mb: Option<&str>) -> Result<Burn, String> {
        let num = |w: Option<&str>, what: &str, max: u32| -> Result<u32, String> {
            w.and_then(|w| w.parse().ok())
                .filter(|&n| (1..=max).contains(&n))
                .ok_or(format!("--burn {what}: expected 1 to {max}"))
        };
        Ok(Burn {
            threads: num(threads, "THREADS", MAX_THREADS)?,
            memory_mb: num(mb, "MB", MAX_MB)?,
        })
    }

    /// Runs the load; returns only if a thread cannot be started.
    pub fn run(self) -> String {
        let share = ((self.memory_mb as usize) << 20) / self.threads as usize;
        let mut hs = Vec::new();
        for i in 0..self.threads {
            match std::thread::Builder::new()
                .name(format!("burn{i}"))
                .spawn(move || walk(share.max(LINE)))
            {
                Ok(h) => hs.push(h),
                Err(e) => return format!("--burn: starting thread {i}: {e}"),
            }
        }
        for h in hs {
            let _ = h.join();
        }
        "--burn: every thread ended".into()
    }
}

const LINE: usize = 64;

/// Touches one byte per cache line of a `bytes` buffer, round after round.
fn walk(bytes: usize) {
    let mut buf = vec![0u8; bytes];
    let mut round = 0u8;
    loop {
        round = round.wrapping_add(1);
        for line in buf.chunks_mut(LINE) {
            line[0] = line[0].wrapping_add(round);
        }
        // Not optimised away: the buffer is observed.
        std::hint::black_box(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds_its_arguments() {
        assert_eq!(
            Burn::parse(Some("2"), Some("64")),
            Ok(Burn {
                threads: 2,
                memory_mb: 64
            })
        );
        for (t, m, what) in [
            (None, Some("1"), "THREADS"),
            (Some("0"), Some("1"), "THREADS"),
            (Some("65"), Some("1"), "THREADS"),
            (Some("1"), Some("x"), "MB"),
            (Some("1"), None, "MB"),
            (Some("1"), Some("4097"), "MB"),
        ] {
            let e = Burn::parse(t, m).unwrap_err();
            assert!(e.starts_with(&format!("--burn {what}:")), "{e}");
        }
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(Burn::parse_words(&w(&["1", "8"])).is_ok());
        let e = Burn::parse_words(&w(&["1", "8", "x"])).unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
    }
}
