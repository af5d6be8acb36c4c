//! The minimal FFI to libnftables: a context, a command buffer, and the error buffer.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Mutex;

use crate::{FirewallError, Result};

#[repr(C)]
struct NftCtx {
    _private: [u8; 0],
}

extern "C" {
    fn nft_ctx_new(flags: u32) -> *mut NftCtx;
    fn nft_ctx_free(ctx: *mut NftCtx);
    fn nft_ctx_buffer_output(ctx: *mut NftCtx) -> c_int;
    fn nft_ctx_buffer_error(ctx: *mut NftCtx) -> c_int;
    fn nft_ctx_get_error_buffer(ctx: *mut NftCtx) -> *const c_char;
    fn nft_run_cmd_from_buffer(ctx: *mut NftCtx, buf: *const c_char) -> c_int;
}

struct Ctx(*mut NftCtx);

// SAFETY: a libnftables context has no thread affinity; it is only ever used by one thread at a
// time because it lives behind the Mutex of `Nft`.
unsafe impl Send for Ctx {}

/// A libnftables context bound to the network namespace of the thread that created it (its
/// netlink socket is opened per command in the caller's namespace; weft calls it only from the
/// daemon's own namespace).
pub struct Nft {
    ctx: Mutex<Ctx>,
}

impl Nft {
    pub fn new() -> Result<Self> {
        // SAFETY: nft_ctx_new has no preconditions; a null return is checked below.
        let ctx = unsafe { nft_ctx_new(0) };
        if ctx.is_null() {
            return Err(FirewallError::Context);
        }
        // SAFETY: ctx is a valid, non-null context we own; these calls only switch its output and
        // error streams to internal buffers.
        unsafe {
            nft_ctx_buffer_output(ctx);
            nft_ctx_buffer_error(ctx);
        }
        Ok(Self { ctx: Mutex::new(Ctx(ctx)) })
    }

    /// `nft -f -` with `cmds`, as one atomic transaction.
    pub fn run(&self, cmds: &str) -> Result<()> {
        let c = CString::new(cmds).map_err(|_| FirewallError::Nul)?;
        let ctx = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: ctx.0 is a valid context (created in new, freed only in drop) used under the lock;
        // c is a NUL-terminated string that outlives the call.
        let rc = unsafe { nft_run_cmd_from_buffer(ctx.0, c.as_ptr()) };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: the error buffer is a NUL-terminated string owned by the context, valid until the
        // next command on it, which cannot happen while we hold the lock.
        let message = unsafe {
            let p = nft_ctx_get_error_buffer(ctx.0);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let message = message.lines().find(|l| l.contains("Error")).unwrap_or(&message).trim().to_string();
        Err(FirewallError::Apply { message, commands: cmds.to_string() })
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        let ctx = self.ctx.get_mut().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the context was created by nft_ctx_new and is freed exactly once, here.
        unsafe { nft_ctx_free(ctx.0) };
    }
}
