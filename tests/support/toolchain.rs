//! Shared by the test suites that link and run AOT code: the cross compilers and qemu a target
//! profile needs, installed with apt-get when missing (as root, on a fresh Debian machine), or a
//! loud failure — a test never skips silently because a tool is absent.
use shrink::target::TargetProfile;

pub fn ensure_toolchain(profile: &TargetProfile) {
    if shrink::harness::can_run(profile).is_ok() {
        return;
    }
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(profile.toolchain.packages.iter().map(String::as_str));
    if !apt(&install) {
        apt(&["update", "-qq"]);
        apt(&install);
    }
    if let Err(e) = shrink::harness::can_run(profile) {
        panic!("{e} (installing them with apt-get failed)");
    }
}
