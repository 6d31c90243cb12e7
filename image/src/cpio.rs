//! A cpio "newc" archive writer, the format the kernel unpacks as its
//! initramfs. Entries are written in the order given; the caller sorts them
//! and fixes owners and times, so the same tree gives the same bytes.

use std::io::{self, Write};

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

pub struct Entry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub mtime: u32,
    /// File contents, or the link target of a symlink.
    pub data: &'a [u8],
    /// (major, minor) of a device node.
    pub rdev: (u32, u32),
}

pub struct Writer<W: Write> {
    out: W,
    written: u64,
    ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            ino: 1,
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }

    fn header(&mut self, e: &Entry, nlink: u32, ino: u32) -> io::Result<()> {
        let name_len = e.path.len() + 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize, check: 8 hex digits each.
        let fields = [
            ino,
            e.mode,
            0,
            0,
            nlink,
            e.mtime,
            e.data.len() as u32,
            0,
            0,
            e.rdev.0,
            e.rdev.1,
            name_len as u32,
            0,
        ];
        let mut hdr = String::with_capacity(110);
        hdr.push_str("070701");
        for f in fields {
            hdr.push_str(&format!("{f:08x}"));
        }
        self.put(hdr.as_bytes())?;
        self.put(e.path.as_bytes())?;
        self.put(&[0])?;
        self.pad4()
    }

    pub fn add(&mut self, e: &Entry) -> io::Result<()> {
        let nlink = if e.mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        let ino = self.ino;
        self.ino += 1;
        self.header(e, nlink, ino)?;
        self.put(e.data)?;
        self.pad4()
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let trailer = Entry {
            path: "TRAILER!!!",
            mode: 0,
            mtime: 0,
            data: b"",
            rdev: (0, 0),
        };
        self.header(&trailer, 1, 0)?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = Writer::new(Vec::new());
        w.add(&Entry {
            path: "init",
            mode: S_IFREG | 0o755,
            mtime: 0,
            data: b"abc",
            rdev: (0, 0),
        })
        .unwrap();
        let out = w.finish().unwrap();
        // 110-byte header, "init\0" padded to a multiple of 4, data padded.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001", "inode");
        assert_eq!(&out[14..22], b"000081ed", "mode");
        assert_eq!(&out[54..62], b"00000003", "size");
        assert_eq!(&out[94..102], b"00000005", "name length with NUL");
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..119], b"abc");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn cpio_tool_reads_it_back() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: cpio_tool_reads_it_back: no cpio tool");
            return;
        }
        let mut w = Writer::new(Vec::new());
        w.add(&Entry {
            path: "etc",
            mode: S_IFDIR | 0o755,
            mtime: 0,
            data: b"",
            rdev: (0, 0),
        })
        .unwrap();
        w.add(&Entry {
            path: "etc/x",
            mode: S_IFREG | 0o644,
            mtime: 0,
            data: b"hello",
            rdev: (0, 0),
        })
        .unwrap();
        w.add(&Entry {
            path: "sbin/init",
            mode: S_IFLNK | 0o777,
            mtime: 0,
            data: b"/init",
            rdev: (0, 0),
        })
        .unwrap();
        let out = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        let listing = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        assert!(listing.contains("etc/x"), "{listing}");
        assert!(listing.contains("sbin/init -> /init"), "{listing}");
    }
}
