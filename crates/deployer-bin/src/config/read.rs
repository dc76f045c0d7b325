//! Reading the config file and secret files without trusting their size or kind: a path
//! that names a device (`/dev/urandom`), a FIFO or a huge file is refused before it is read
//! whole, so `config check` always returns.

use std::io::Read;
use std::path::Path;

/// Largest config file read; real ones are a few KiB.
pub(crate) const CONFIG_MAX: u64 = 1 << 20;
/// Largest secret file read; tokens and passwords are far shorter.
pub(crate) const SECRET_MAX: u64 = 64 << 10;

/// The text of the regular file at `path`, at most `limit` bytes; `Err` says why not.
pub(crate) fn read_capped(path: &Path, limit: u64) -> Result<String, String> {
    // `stat` first: opening a FIFO would block until someone writes to it.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    check(&meta, limit)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // Again on what was opened: the path may have been swapped in between.
    check(&file.metadata().map_err(|e| e.to_string())?, limit)?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > limit {
        return Err(too_big(limit));
    }
    Ok(text)
}

fn check(meta: &std::fs::Metadata, limit: u64) -> Result<(), String> {
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > limit {
        return Err(format!("{} bytes: {}", meta.len(), too_big(limit)));
    }
    Ok(())
}

fn too_big(limit: u64) -> String {
    format!("larger than the limit of {} KiB", limit >> 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_big_files_are_refused_unread() {
        assert_eq!(
            read_capped(Path::new("/dev/urandom"), CONFIG_MAX),
            Err("not a regular file".to_owned())
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_capped(dir.path(), CONFIG_MAX),
            Err("not a regular file".to_owned())
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
        assert_eq!(
            read_capped(&big, CONFIG_MAX),
            Err("2097152 bytes: larger than the limit of 1024 KiB".to_owned())
        );
        let small = dir.path().join("small.toml");
        std::fs::write(&small, "node = \"a\"\n").unwrap();
        assert_eq!(read_capped(&small, CONFIG_MAX).unwrap(), "node = \"a\"\n");
    }
}
