//! Filesystems to run a test on: each run gets a fresh loop image (sparse
//! file on a tmpfs scratch area), formatted and mounted for it alone.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Ext4,
    Xfs,
    Btrfs,
    /// No image: a tmpfs (pre-content marks are refused there).
    Tmpfs,
}

/// The filesystems that support pre-content marks (SB_I_ALLOW_HSM) in 7.3.
pub const HSM_FILESYSTEMS: &[Fs] = &[Fs::Ext4, Fs::Xfs, Fs::Btrfs];

/// Image size: xfsprogs refuses filesystems under 300 MiB.
const IMAGE_BYTES: u64 = 512 << 20;

impl Fs {
    pub fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
            Fs::Btrfs => "btrfs",
            Fs::Tmpfs => "tmpfs",
        }
    }

    /// The kernel config option the filesystem needs.
    pub fn kconfig(self) -> &'static str {
        match self {
            Fs::Ext4 => "CONFIG_EXT4_FS",
            Fs::Xfs => "CONFIG_XFS_FS",
            Fs::Btrfs => "CONFIG_BTRFS_FS",
            Fs::Tmpfs => "CONFIG_TMPFS",
        }
    }

    /// The command that makes this filesystem (none for tmpfs).
    pub fn mkfs_cmd(self) -> Option<&'static str> {
        self.mkfs().map(|m| m.0)
    }

    fn mkfs(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Fs::Ext4 => Some(("mkfs.ext4", &["-F", "-q"])),
            Fs::Xfs => Some(("mkfs.xfs", &["-f", "-q"])),
            Fs::Btrfs => Some(("mkfs.btrfs", &["-f", "-q"])),
            Fs::Tmpfs => None,
        }
    }

    /// Make and mount a fresh filesystem of this type at `mnt`, with its image
    /// in `scratch`.
    pub fn mount(self, scratch: &Path, mnt: &Path) -> Result<Mounted> {
        std::fs::create_dir_all(mnt).with_context(|| format!("mkdir {}", mnt.display()))?;
        let image = match self.mkfs() {
            None => {
                run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=256m", "fpc-tmpfs"])
                    .arg(mnt))?;
                None
            }
            Some((mkfs, args)) => {
                let img = scratch.join(format!("{}.img", self.name()));
                let f = std::fs::File::create(&img)
                    .with_context(|| format!("create {}", img.display()))?;
                f.set_len(IMAGE_BYTES).context("size the image")?;
                drop(f);
                run(Command::new(mkfs).args(args).arg(&img))?;
                run(Command::new("mount")
                    .args(["-t", self.name(), "-o", "loop"])
                    .arg(&img)
                    .arg(mnt))?;
                Some(img)
            }
        };
        Ok(Mounted {
            mnt: mnt.to_path_buf(),
            image,
        })
    }
}

/// A mounted test filesystem; unmounted (and its image removed) on drop.
#[derive(Debug)]
pub struct Mounted {
    pub mnt: PathBuf,
    image: Option<PathBuf>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A lazy unmount never blocks on a test's leftover references.
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        if let Some(img) = &self.image {
            let _ = std::fs::remove_file(img);
        }
    }
}

/// Run a command, failing with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
