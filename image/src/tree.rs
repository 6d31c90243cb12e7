//! The image's file tree, kept sorted, written three ways: a cpio newc
//! initramfs, a directory and a tarball (the LXC rootfs). Owners are root,
//! times are one fixed epoch, so equal trees give equal bytes.

use crate::cpio;
use crate::ImageError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// Paths are relative (`sbin/init`), without a leading slash.
#[derive(Debug, Default, Clone)]
pub struct Tree(pub BTreeMap<String, Node>);

/// Directories the init mounts on or reads from.
const BASE_DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("etc", 0o755),
    ("etc/tinyvr", 0o755),
    ("proc", 0o555),
    ("run", 0o755),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
];

impl Tree {
    /// The router's tree: the init as /init, /sbin/init pointing at it, and
    /// the directories it needs.
    pub fn router(init: Vec<u8>) -> Tree {
        let mut t = Tree::default();
        for (d, mode) in BASE_DIRS {
            t.0.insert(d.to_string(), Node::Dir { mode: *mode });
        }
        t.0.insert(
            "init".into(),
            Node::File {
                mode: 0o755,
                data: init,
            },
        );
        t.0.insert(
            "sbin/init".into(),
            Node::Symlink {
                target: "/init".into(),
            },
        );
        t
    }

    fn add_parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p {
            let s = dir.to_string_lossy();
            if s.is_empty() {
                break;
            }
            self.0
                .entry(s.into_owned())
                .or_insert(Node::Dir { mode: 0o755 });
            p = dir.parent();
        }
    }

    /// Adds a host file or directory (recursively) at `dst` in the image.
    pub fn add_host(&mut self, src: &Path, dst: &str) -> Result<(), ImageError> {
        let dst = dst
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        if dst.is_empty() || dst.split('/').any(|c| c == ".." || c == ".") {
            return Err(ImageError::BadAdd(format!(
                "{}:{dst}: the destination must be a path inside the image",
                src.display()
            )));
        }
        let meta = std::fs::symlink_metadata(src)
            .map_err(|e| ImageError::BadAdd(format!("{}: {e}", src.display())))?;
        self.add_parents(&dst);
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(src)
                .map_err(|e| ImageError::BadAdd(format!("{}: {e}", src.display())))?;
            self.0.insert(
                dst,
                Node::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            );
        } else if meta.is_dir() {
            self.0.insert(dst.clone(), Node::Dir { mode });
            let mut entries: Vec<_> = std::fs::read_dir(src)
                .map_err(|e| ImageError::BadAdd(format!("{}: {e}", src.display())))?
                .filter_map(|e| e.ok())
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                self.add_host(
                    &e.path(),
                    &format!("{dst}/{}", e.file_name().to_string_lossy()),
                )?;
            }
        } else {
            let data = std::fs::read(src)
                .map_err(|e| ImageError::BadAdd(format!("{}: {e}", src.display())))?;
            self.0.insert(dst, Node::File { mode, data });
        }
        Ok(())
    }

    /// The initramfs: the tree plus /dev/console, which the kernel opens for
    /// init's stdin/stdout/stderr before anything can mount devtmpfs.
    pub fn write_cpio_gz(&self, out: &Path, mtime: u32) -> Result<(), ImageError> {
        let f = std::fs::File::create(out).map_err(|e| ImageError::io(out, e))?;
        // flate2 writes mtime 0 and a fixed OS byte in the gzip header: deterministic.
        let gz =
            flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::best());
        let mut w = cpio::Writer::new(gz);
        let io = |e| ImageError::io(out, e);
        let console = "dev/console";
        let mut paths: Vec<&str> = self.0.keys().map(String::as_str).collect();
        paths.push(console);
        paths.sort_unstable();
        for p in paths {
            let e = match self.0.get(p) {
                None => cpio::Entry {
                    path: p,
                    mode: cpio::S_IFCHR | 0o600,
                    mtime,
                    data: b"",
                    rdev: (5, 1),
                },
                Some(Node::Dir { mode }) => cpio::Entry {
                    path: p,
                    mode: cpio::S_IFDIR | mode,
                    mtime,
                    data: b"",
                    rdev: (0, 0),
                },
                Some(Node::File { mode, data }) => cpio::Entry {
                    path: p,
                    mode: cpio::S_IFREG | mode,
                    mtime,
                    data,
                    rdev: (0, 0),
                },
                Some(Node::Symlink { target }) => cpio::Entry {
                    path: p,
                    mode: cpio::S_IFLNK | 0o777,
                    mtime,
                    data: target.as_bytes(),
                    rdev: (0, 0),
                },
            };
            w.add(&e).map_err(io)?;
        }
        let gz = w.finish().map_err(io)?;
        gz.finish().map_err(io)?.flush().map_err(io)?;
        Ok(())
    }

    pub fn write_tar(&self, out: &Path, mtime: u64) -> Result<(), ImageError> {
        let io = |e| ImageError::io(out, e);
        let f = std::fs::File::create(out).map_err(io)?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        for (p, node) in &self.0 {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            match node {
                Node::Dir { mode } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{p}/"), std::io::empty())
                        .map_err(io)?;
                }
                Node::File { mode, data } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, data.as_slice()).map_err(io)?;
                }
                Node::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).map_err(io)?;
                }
            }
        }
        b.into_inner().map_err(io)?.flush().map_err(io)?;
        Ok(())
    }

    pub fn write_dir(&self, root: &Path) -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root).map_err(|e| ImageError::io(root, e))?;
        for (p, node) in &self.0 {
            let path = root.join(p);
            let io = |e| ImageError::io(&path, e);
            match node {
                Node::Dir { mode } => {
                    std::fs::create_dir_all(&path).map_err(io)?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                        .map_err(io)?;
                }
                Node::File { mode, data } => {
                    std::fs::write(&path, data).map_err(io)?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                        .map_err(io)?;
                }
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &path).map_err(io)?
                }
            }
        }
        Ok(())
    }
}
