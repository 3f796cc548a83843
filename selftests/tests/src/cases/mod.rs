//! The test table.  One file per test.

use ltp::Test;

mod hsm_complete;
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
mod pre_fault_basic;
mod pre_fault_concurrency;
mod pre_fault_dax;
mod pre_fault_deny;
mod pre_fault_freeze;
mod pre_fault_listener_death;
mod pre_fault_matrix;
mod pre_fault_readahead;
mod pre_fault_reuse;
mod pre_fault_seq;
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
    pre_fault_deny::TEST,
    pre_fault_matrix::TEST,
    pre_fault_reuse::TEST,
    pre_fault_readahead::TEST,
    pre_fault_seq::TEST,
    pre_fault_freeze::TEST,
    pre_fault_listener_death::TEST,
    pre_fault_concurrency::TEST,
    pre_fault_dax::TEST,
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
    hsm_state_compact::TEST,
];
