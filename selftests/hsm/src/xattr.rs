//! Extended attributes on descriptors and paths (nix has no wrappers).
//! A missing attribute is `Ok(None)` / not an error on removal.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest value the tools read.
const MAX_VALUE: usize = 64 * 1024;

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn get(call: impl Fn(*mut libc::c_void, usize) -> libc::ssize_t) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = call(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < MAX_VALUE => buf.resize(MAX_VALUE, 0),
            _ => return Err(e),
        }
    }
}

/// `fgetxattr(2)`.
pub fn fget(fd: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let n = cstr(name.as_bytes())?;
    // SAFETY: n is NUL-terminated; the buffer pointer/length pair is valid.
    get(|p, len| unsafe { libc::fgetxattr(fd.as_raw_fd(), n.as_ptr(), p, len) })
}

/// `lgetxattr(2)` (does not follow a final symlink).
pub fn lget(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: both strings are NUL-terminated; the buffer pair is valid.
    get(|b, len| unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), b, len) })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fsetxattr(2)` (create or replace).
pub fn fset(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cstr(name.as_bytes())?;
    // SAFETY: n is NUL-terminated; value is a valid slice.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `lsetxattr(2)` (create or replace).
pub fn lset(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cstr(path.as_os_str().as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: both strings are NUL-terminated; value is a valid slice.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `setxattr(2)` on what an `O_PATH` descriptor refers to, through its
/// `/proc/self/fd` link: `fsetxattr(2)` refuses `O_PATH` descriptors, and a
/// directory opened for reading would send `FAN_PRE_DIR_ACCESS`.
pub fn opath_set(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    let n = cstr(name.as_bytes())?;
    // SAFETY: both strings are NUL-terminated; value is a valid slice.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `fremovexattr(2)`; a missing attribute is not an error.
pub fn fremove(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let n = cstr(name.as_bytes())?;
    // SAFETY: n is NUL-terminated.
    match check(unsafe { libc::fremovexattr(fd.as_raw_fd(), n.as_ptr()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Round trip on the host's temp directory, when it has user xattrs.
    #[test]
    fn round_trip_if_supported() {
        let dir = std::env::temp_dir().join(format!("hsm-xattr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let f = std::fs::File::create(&path).unwrap();
        match fset(f.as_fd(), "user.hsm.test", b"abc") {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => panic!("fsetxattr: {e}"),
            Ok(()) => {
                assert_eq!(fget(f.as_fd(), "user.hsm.test").unwrap().unwrap(), b"abc");
                assert_eq!(lget(&path, "user.hsm.test").unwrap().unwrap(), b"abc");
                let long = vec![b'x'; 3000];
                lset(&path, "user.hsm.test", &long).unwrap();
                assert_eq!(fget(f.as_fd(), "user.hsm.test").unwrap().unwrap(), long);
                fremove(f.as_fd(), "user.hsm.test").unwrap();
                fremove(f.as_fd(), "user.hsm.test").unwrap();
                assert_eq!(fget(f.as_fd(), "user.hsm.test").unwrap(), None);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
