//! The test table.  One file per test.

use ltp::Test;

mod freeze_util;
mod hsm_complete;
mod hsm_evict;
mod hsm_fs_mark;
mod hsm_http;
mod hsm_http_bad_answer;
mod hsm_http_down;
mod hsm_http_kill;
mod hsm_http_netem;
mod hsm_lazy_exec;
mod hsm_lazy_find;
mod hsm_lazy_restart;
mod hsm_lazy_stat;
mod hsm_lazy_util;
mod hsm_populate;
mod hsm_restart;
mod hsm_serve_errors;
mod hsm_serve_fault;
mod hsm_serve_mmap;
mod hsm_serve_workers;
mod hsm_source_gone;
mod hsm_state_compact;
mod hsm_util;
mod hsm_validate;
mod kunit_rust;
mod pre_access_deny;
mod pre_access_eventfd;
mod pre_access_exec;
mod pre_access_mark_errors;
mod pre_access_mmap;
mod pre_access_rw;
mod pre_access_unpriv;
mod pre_dir_concurrent;
mod pre_dir_freeze;
mod pre_dir_listener_death;
mod pre_dir_lookup;
mod pre_dir_mark;
mod pre_dir_pathless;
mod pre_dir_util;
mod pre_fault_basic;
mod pre_fault_concurrency;
mod pre_fault_dax;
mod pre_fault_deny;
mod pre_fault_evict;
mod pre_fault_exec;
mod pre_fault_freeze;
mod pre_fault_freeze_cross;
mod pre_fault_invariant;
mod pre_fault_large_buffer;
mod pre_fault_leave;
mod pre_fault_listener_death;
mod pre_fault_mark_validation;
mod pre_fault_matrix;
mod pre_fault_mmap_lock;
mod pre_fault_nowait;
mod pre_fault_ra_marker;
mod pre_fault_range;
mod pre_fault_read_batch;
mod pre_fault_readahead;
mod pre_fault_reflink;
mod pre_fault_reuse;
mod pre_fault_same_file;
mod pre_fault_seq;
mod pre_fault_short_write;
mod pre_fault_write_atomic;
mod rust_lazy_mirror;

pub static ALL: &[Test] = &[
    pre_access_rw::TEST,
    pre_access_mmap::TEST,
    pre_access_deny::TEST,
    pre_access_exec::TEST,
    pre_access_eventfd::TEST,
    pre_access_mark_errors::TEST,
    pre_access_unpriv::TEST,
    pre_fault_basic::TEST,
    pre_fault_invariant::TEST,
    pre_fault_leave::TEST,
    pre_fault_mark_validation::TEST,
    pre_fault_read_batch::TEST,
    pre_fault_ra_marker::TEST,
    pre_fault_range::TEST,
    pre_fault_deny::TEST,
    pre_fault_matrix::TEST,
    pre_fault_exec::TEST,
    pre_fault_same_file::TEST,
    pre_fault_short_write::TEST,
    pre_fault_write_atomic::TEST,
    pre_fault_large_buffer::TEST,
    pre_fault_reuse::TEST,
    pre_fault_reflink::TEST,
    pre_fault_evict::TEST,
    pre_fault_readahead::TEST,
    pre_fault_seq::TEST,
    pre_fault_freeze::TEST,
    pre_fault_freeze_cross::TEST,
    pre_fault_listener_death::TEST,
    pre_fault_mmap_lock::TEST,
    pre_fault_nowait::TEST,
    pre_fault_concurrency::TEST,
    pre_fault_dax::TEST,
    pre_dir_mark::TEST,
    pre_dir_lookup::TEST,
    pre_dir_concurrent::TEST,
    pre_dir_freeze::TEST,
    pre_dir_listener_death::TEST,
    pre_dir_pathless::TEST,
    rust_lazy_mirror::TEST,
    kunit_rust::TEST,
    hsm_validate::TEST,
    hsm_populate::TEST,
    hsm_serve_fault::TEST,
    hsm_serve_mmap::TEST,
    hsm_serve_errors::TEST,
    hsm_serve_workers::TEST,
    hsm_restart::TEST,
    hsm_source_gone::TEST,
    hsm_complete::TEST,
    hsm_fs_mark::TEST,
    hsm_evict::TEST,
    hsm_state_compact::TEST,
    hsm_http_kill::TEST,
    hsm_http_down::TEST,
    hsm_http_bad_answer::TEST,
    hsm_http_netem::TEST,
    hsm_lazy_find::TEST,
    hsm_lazy_stat::TEST,
    hsm_lazy_exec::TEST,
    hsm_lazy_restart::TEST,
];

/// Tags must lead a reader of this repository somewhere: see "Tags" in
/// selftests/README.md.
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The section headings of the cover letter: the paragraph above each
    /// line of dashes.
    fn headings(cover: &str) -> Vec<String> {
        let lines: Vec<&str> = cover.lines().collect();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.len() >= 3 && l.chars().all(|c| c == '-') {
                let mut j = i;
                while j > 0 && !lines[j - 1].trim().is_empty() {
                    j -= 1;
                }
                out.push(lines[j..i].join(" "));
            }
        }
        out
    }

    /// Files the series adds or changes in the kernel tree.
    fn series_files() -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(repo().join("patches")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "patch") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.extend(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("+++ b/"))
                        .map(str::to_string),
                );
            }
        }
        out
    }

    #[test]
    fn tags_can_be_followed() {
        let cover =
            std::fs::read_to_string(repo().join("patches/0000-cover-letter.patch")).unwrap();
        let heads = headings(&cover);
        let files = series_files();
        for t in super::ALL {
            assert!(!t.tags.is_empty(), "{}: no tags", t.name);
            for &(k, v) in t.tags {
                let what = format!("{}: tag {k}: {v}", t.name);
                match k {
                    "cover-letter" => {
                        let (sec, detail) = v.split_once(": ").unwrap_or((v, ""));
                        assert!(
                            heads.iter().any(|h| h.starts_with(sec)),
                            "{what}: no section '{sec}' in the cover letter ({heads:?})"
                        );
                        if sec == "Objections of the revert, answered" {
                            let n: String =
                                detail.chars().take_while(char::is_ascii_digit).collect();
                            assert!(
                                !n.is_empty()
                                    && cover.lines().any(|l| l.starts_with(&format!("{n}. "))),
                                "{what}: no objection '{n}.' in the cover letter"
                            );
                        }
                    }
                    "doc" => assert!(
                        repo().join(v).exists() || files.iter().any(|f| f == v),
                        "{what}: neither in this repository nor added by patches/"
                    ),
                    "kernel" => {
                        let path = v.split(':').next().unwrap();
                        assert!(
                            !path.contains(' ') && path.contains('/'),
                            "{what}: want 'path/in/the/kernel/tree: what'"
                        );
                    }
                    "linux-git" => {
                        let id = v.split(' ').next().unwrap();
                        assert!(
                            id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
                            "{what}: want a 12-digit mainline commit id first"
                        );
                    }
                    "issue" => assert!(
                        v.split_once(": ").is_some_and(|(n, what)| {
                            n.parse::<u32>().is_ok() && !what.trim().is_empty()
                        }),
                        "{what}: want 'N: what', N the number of the issue"
                    ),
                    "ltp" => assert!(
                        v.strip_prefix("fanotify")
                            .is_some_and(|n| n.parse::<u32>().is_ok()),
                        "{what}: want an LTP fanotify test (fanotifyNN)"
                    ),
                    _ => panic!(
                        "{what}: unknown kind (cover-letter, doc, issue, kernel, linux-git, ltp)"
                    ),
                }
            }
        }
    }
}
