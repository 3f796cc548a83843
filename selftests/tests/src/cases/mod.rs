//! The test table.  One file per test.

use ltp::Test;

mod pre_access_deny;
mod pre_access_eventfd;
mod pre_access_exec;
mod pre_access_mark_errors;
mod pre_access_mmap;
mod pre_access_rw;
mod pre_access_unpriv;

pub static ALL: &[Test] = &[
    pre_access_rw::TEST,
    pre_access_mmap::TEST,
    pre_access_deny::TEST,
    pre_access_exec::TEST,
    pre_access_eventfd::TEST,
    pre_access_mark_errors::TEST,
    pre_access_unpriv::TEST,
];
