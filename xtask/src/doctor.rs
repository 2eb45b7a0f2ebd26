//! Prerequisites: what building PostgreSQL and the extension needs, how to
//! check it, and how to install it. Also the `cargo xtask doctor` task.

use std::path::Path;

use anyhow::{Result, bail};

use crate::cmd::{self, tool};
use crate::flags::Doctor;
use crate::ui;

/// One prerequisite with the packages that provide it.
#[derive(Debug)]
pub struct Prereq {
    pub what: &'static str,
    pub deb: &'static str,
    pub rpm: &'static str,
    check: fn() -> bool,
}

fn any_on_path(names: &[&str]) -> bool {
    names.iter().any(|n| cmd::on_path(n).is_some())
}

fn pkg_config(module: &str) -> bool {
    tool("pkg-config", ["--exists", module])
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| o.status.success())
}

fn libclang() -> bool {
    if let Ok(dir) = std::env::var("LIBCLANG_PATH")
        && has_libclang(Path::new(&dir))
    {
        return true;
    }
    let mut dirs = vec![
        "/usr/lib/x86_64-linux-gnu".into(),
        "/usr/lib/aarch64-linux-gnu".into(),
        "/usr/lib64".into(),
        "/usr/lib".into(),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("llvm") {
                dirs.push(e.path().join("lib"));
            }
        }
    }
    dirs.iter().any(|d: &std::path::PathBuf| has_libclang(d))
}

fn has_libclang(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("libclang") && n.contains(".so") && !n.starts_with("libclang-cpp")
        })
    })
}

/// Everything `cargo xtask build` needs, in the order it is reported.
pub fn prerequisites() -> Vec<Prereq> {
    vec![
        Prereq { what: "C compiler (cc)", deb: "gcc", rpm: "gcc", check: || any_on_path(&["cc", "gcc"]) },
        Prereq { what: "make", deb: "make", rpm: "make", check: || any_on_path(&["make"]) },
        Prereq { what: "ccache", deb: "ccache", rpm: "ccache", check: || any_on_path(&["ccache"]) },
        Prereq { what: "bison", deb: "bison", rpm: "bison", check: || any_on_path(&["bison"]) },
        Prereq { what: "flex", deb: "flex", rpm: "flex", check: || any_on_path(&["flex"]) },
        Prereq { what: "perl", deb: "perl", rpm: "perl", check: || any_on_path(&["perl"]) },
        Prereq { what: "patch", deb: "patch", rpm: "patch", check: || any_on_path(&["patch"]) },
        Prereq { what: "diff", deb: "diffutils", rpm: "diffutils", check: || any_on_path(&["diff"]) },
        Prereq {
            what: "pkg-config",
            deb: "pkg-config",
            rpm: "pkgconf-pkg-config",
            check: || any_on_path(&["pkg-config"]),
        },
        Prereq {
            what: "readline development files",
            deb: "libreadline-dev",
            rpm: "readline-devel",
            check: || pkg_config("readline") || Path::new("/usr/include/readline/readline.h").exists(),
        },
        Prereq {
            what: "zlib development files",
            deb: "zlib1g-dev",
            rpm: "zlib-devel",
            check: || pkg_config("zlib"),
        },
        Prereq {
            what: "OpenSSL development files",
            deb: "libssl-dev",
            rpm: "openssl-devel",
            check: || pkg_config("openssl"),
        },
        Prereq {
            what: "ICU development files",
            deb: "libicu-dev",
            rpm: "libicu-devel",
            check: || pkg_config("icu-uc") && pkg_config("icu-i18n"),
        },
        Prereq {
            what: "libclang (for pgrx's bindgen)",
            deb: "libclang-dev",
            rpm: "clang-devel",
            check: libclang,
        },
    ]
}

/// What `cargo xtask package` and the package tests need besides the build
/// prerequisites: ELF inspection for the packages' library dependencies,
/// dpkg to query and install .deb files, rpm's tools to inspect and unpack
/// .rpm files.
pub fn packaging_prerequisites() -> Vec<Prereq> {
    vec![
        Prereq { what: "readelf", deb: "binutils", rpm: "binutils", check: || any_on_path(&["readelf"]) },
        Prereq {
            what: "dpkg and dpkg-deb",
            deb: "dpkg",
            rpm: "dpkg",
            check: || any_on_path(&["dpkg"]) && any_on_path(&["dpkg-deb"]),
        },
        Prereq {
            what: "rpm and rpm2archive",
            deb: "rpm",
            rpm: "rpm",
            check: || any_on_path(&["rpm"]) && any_on_path(&["rpm2archive"]),
        },
        Prereq {
            what: "dpkg-shlibdeps",
            deb: "dpkg-dev",
            rpm: "dpkg-dev",
            check: || any_on_path(&["dpkg-shlibdeps"]),
        },
        Prereq { what: "lintian", deb: "lintian", rpm: "lintian", check: || any_on_path(&["lintian"]) },
        Prereq { what: "rpmlint", deb: "rpmlint", rpm: "rpmlint", check: || any_on_path(&["rpmlint"]) },
        // Signs the .rpm files (rpmsign calls it) and SHA256SUMS.
        Prereq { what: "gpg", deb: "gnupg", rpm: "gnupg2", check: || any_on_path(&["gpg"]) },
        // Takes the run path out of the .rpm's ELF files (PGDG's have none).
        Prereq { what: "chrpath", deb: "chrpath", rpm: "chrpath", check: || any_on_path(&["chrpath"]) },
    ]
}

/// What spockbench's network namespaces need (root only): `ip` to make
/// namespaces and links, `iptables` to cut a link (`tc` comes with `ip`).
pub fn network_prerequisites() -> Vec<Prereq> {
    vec![
        Prereq {
            what: "ip and tc",
            deb: "iproute2",
            rpm: "iproute-tc",
            check: || any_on_path(&["ip"]) && any_on_path(&["tc"]),
        },
        Prereq { what: "iptables", deb: "iptables", rpm: "iptables", check: || any_on_path(&["iptables"]) },
    ]
}

/// `ensure` for the network prerequisites.
pub fn ensure_network(install: bool) -> Result<()> {
    ensure_set(&network_prerequisites(), install)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Debian,
    RedHat,
    Other,
}

fn family() -> Family {
    if Path::new("/etc/debian_version").exists() {
        return Family::Debian;
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if Path::new("/etc/redhat-release").exists()
        || os.lines().any(|l| l.starts_with("ID_LIKE") && (l.contains("rhel") || l.contains("fedora")))
    {
        return Family::RedHat;
    }
    Family::Other
}

fn install_line(missing: &[&Prereq], fam: Family) -> String {
    let sudo = if nix::unistd::geteuid().is_root() { "" } else { "sudo " };
    match fam {
        Family::RedHat => {
            format!("{sudo}dnf install -y {}", missing.iter().map(|p| p.rpm).collect::<Vec<_>>().join(" "))
        }
        _ => format!(
            "{sudo}apt-get install -y {}",
            missing.iter().map(|p| p.deb).collect::<Vec<_>>().join(" ")
        ),
    }
}

/// Checks the prerequisites. What is missing is installed with apt when
/// running as root on a Debian-family system (and `install` is true);
/// otherwise the error gives the exact command to run.
pub fn ensure(install: bool) -> Result<()> {
    ensure_set(&prerequisites(), install)?;
    if cmd::on_path("rustfmt").is_none() {
        bail!(
            "rustfmt is missing (pgrx formats its generated bindings with it). Install it with:\n    rustup component add rustfmt"
        );
    }
    Ok(())
}

/// `ensure` for the packaging prerequisites.
pub fn ensure_packaging(install: bool) -> Result<()> {
    ensure_set(&packaging_prerequisites(), install)
}

fn ensure_set(all: &[Prereq], install: bool) -> Result<()> {
    let missing: Vec<&Prereq> = all.iter().filter(|p| !(p.check)()).collect();
    let fam = family();
    if !missing.is_empty() {
        let names = missing.iter().map(|p| p.what).collect::<Vec<_>>().join(", ");
        if install && fam == Family::Debian && nix::unistd::geteuid().is_root() {
            let packages: Vec<&str> = missing.iter().map(|p| p.deb).collect();
            let step = ui::Step::start(format!(
                "Installing missing prerequisites with apt-get: {}",
                packages.join(" ")
            ));
            let log = crate::layout::target_dir().join("apt-install.log");
            cmd::run_logged(
                tool("apt-get", ["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"),
                "apt-get update",
                &log,
            )?;
            let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
            args.extend(&packages);
            cmd::run_logged(
                tool("apt-get", &args).env("DEBIAN_FRONTEND", "noninteractive"),
                "apt-get install",
                &log,
            )?;
            step.done("");
            let still: Vec<&str> = all.iter().filter(|p| !(p.check)()).map(|p| p.what).collect();
            if !still.is_empty() {
                bail!("still missing after apt-get install: {}", still.join(", "));
            }
        } else {
            bail!(
                "missing prerequisites: {names}.\nInstall them with:\n    {}\n(`cargo xtask doctor` installs them itself when run as root on Debian.)",
                install_line(&missing, fam)
            );
        }
    }
    Ok(())
}

impl Doctor {
    pub fn run(self) -> Result<()> {
        let mut any_missing = false;
        for p in prerequisites().into_iter().chain(packaging_prerequisites()) {
            let ok = (p.check)();
            any_missing |= !ok;
            println!(
                "{} {:<32} (Debian: {}, RPM: {})",
                if ok { "ok     " } else { "MISSING" },
                p.what,
                p.deb,
                p.rpm
            );
        }
        let rustfmt = cmd::on_path("rustfmt").is_some();
        println!(
            "{} {:<32} (rustup component add rustfmt)",
            if rustfmt { "ok     " } else { "MISSING" },
            "rustfmt"
        );
        let root = nix::unistd::geteuid().is_root();
        println!(
            "note    servers run as {}",
            if root {
                "an unprivileged account (running as root; PostgreSQL refuses root)"
            } else {
                "the current user"
            }
        );
        if any_missing || !rustfmt {
            ensure(!self.check_only)?;
            ensure_packaging(!self.check_only)?;
            println!("all prerequisites are installed");
        }
        Ok(())
    }
}
