//! Named points in the refresh path where the crate's crash tests kill the process (feature `failpoints`, for this
//! crate's own tests only). Without the feature, a failpoint is nothing at all.

/// With feature `failpoints` and `HUBCONNECT_FAILPOINT` naming this point: says so on stderr and stops here, for
/// the test that started this process to kill it with SIGKILL.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) {
    if std::env::var("HUBCONNECT_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("FAILPOINT {name}");
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3_600));
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) {}
