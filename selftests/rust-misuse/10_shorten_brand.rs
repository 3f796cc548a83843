// SPDX-License-Identifier: GPL-2.0
// Passing a fault's return value off as one of a shorter-lived fault (the brand is invariant).
//
// expect: lifetime may not live long enough

fn shorten<'a, 'b: 'a>(vmf: VmFault<'b>) -> VmFaultReturn<'a> {
    vmf.sigbus()
}
