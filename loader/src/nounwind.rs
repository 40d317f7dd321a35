//! Stand-ins for the unwinder's entry points that std still links with `panic = "abort"`: the
//! panic hook walks the stack for `RUST_BACKTRACE` (`_Unwind_Backtrace`, `_Unwind_GetIP`), and
//! std's personality routine reads unwind contexts (the rest). The loader aborts on panic, so no
//! exception is ever raised and no personality routine ever runs, and it carries no symbolizer,
//! so that backtrace would be bare addresses. Without these definitions the linker pulls LLVM's
//! libunwind (and through it musl's printf) into the static musl loader: ~50 KB, 8% of it. A
//! panic still prints its message; the backtrace ends at once.

use std::ffi::c_void;

/// `_URC_END_OF_STACK`: the walk is over before its first frame.
const END_OF_STACK: i32 = 5;
/// `_URC_FATAL_PHASE1_ERROR`: never returned in practice (nothing ever unwinds).
const FATAL: i32 = 3;

#[no_mangle]
extern "C" fn _Unwind_Backtrace(_trace: *const c_void, _arg: *mut c_void) -> i32 {
    END_OF_STACK
}

#[no_mangle]
extern "C" fn _Unwind_GetIP(_context: *const c_void) -> usize {
    0
}

#[no_mangle]
extern "C" fn _Unwind_GetIPInfo(_context: *const c_void, before: *mut i32) -> usize {
    let _ = before;
    0
}

#[no_mangle]
extern "C" fn _Unwind_GetDataRelBase(_context: *const c_void) -> usize {
    0
}

#[no_mangle]
extern "C" fn _Unwind_GetTextRelBase(_context: *const c_void) -> usize {
    0
}

#[no_mangle]
extern "C" fn _Unwind_GetRegionStart(_context: *const c_void) -> usize {
    0
}

#[no_mangle]
extern "C" fn _Unwind_GetLanguageSpecificData(_context: *const c_void) -> *const c_void {
    std::ptr::null()
}

#[no_mangle]
extern "C" fn _Unwind_GetCFA(_context: *const c_void) -> usize {
    0
}

#[no_mangle]
extern "C" fn _Unwind_SetGR(_context: *mut c_void, _index: i32, _value: usize) {}

#[no_mangle]
extern "C" fn _Unwind_SetIP(_context: *mut c_void, _value: usize) {}

#[no_mangle]
extern "C" fn _Unwind_FindEnclosingFunction(_pc: *const c_void) -> *const c_void {
    std::ptr::null()
}

#[no_mangle]
extern "C" fn _Unwind_RaiseException(_exception: *mut c_void) -> i32 {
    FATAL
}

#[no_mangle]
extern "C" fn _Unwind_DeleteException(_exception: *mut c_void) {}

#[no_mangle]
extern "C" fn _Unwind_Resume(_exception: *mut c_void) -> ! {
    std::process::abort()
}
