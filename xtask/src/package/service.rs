//! Service management of the .rpm server package, in the form a DBA knows
//! from PGDG's `postgresqlN-server`: the systemd unit `postgresql-N.service`
//! (data in `/var/lib/pgsql/N/data`, run as `postgres`), the helper
//! `postgresql-N-setup initdb` that creates that data directory, the check
//! the unit runs before starting, and the `%post`/`%preun`/`%postun`
//! scriptlets that enable, stop and restart the unit the way the systemd
//! RPM macros do (`ldconfig` runs in the `-libs` package's). (The .deb integrates with
//! postgresql-common instead: `deb.rs`.)

use crate::layout::LayoutPaths;

/// The unit's name.
pub fn unit_name(major: u32) -> String {
    format!("postgresql-{major}.service")
}

/// The files the .rpm server package adds: (path, contents, mode).
pub fn rpm_files(major: u32, paths: &LayoutPaths) -> Vec<(String, Vec<u8>, u32)> {
    let bindir = paths.bindir();
    vec![
        (format!("/usr/lib/systemd/system/{}", unit_name(major)), unit(major, &bindir).into_bytes(), 0o644),
        (format!("{bindir}/postgresql-{major}-setup"), setup(major).into_bytes(), 0o755),
        (format!("{bindir}/postgresql-{major}-check-db-dir"), check_db_dir(major).into_bytes(), 0o755),
    ]
}

/// The default data directory, as PGDG's packages have it.
fn default_pgdata(major: u32) -> String {
    format!("/var/lib/pgsql/{major}/data/")
}

fn unit(major: u32, bindir: &str) -> String {
    format!(
        "# The PostgreSQL {major} server of package spock-postgresql{major}, with the spock core patches.\n\
         # To change the data directory or the environment, run `systemctl edit {unit}` and set\n\
         # Environment=PGDATA=... in the [Service] section of the drop-in file.\n\
         [Unit]\n\
         Description=PostgreSQL {major} database server (spock core patches)\n\
         Documentation=man:postgres(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User=postgres\n\
         Group=postgres\n\
         Environment=PGDATA={pgdata}\n\
         # The postmaster is not killed when memory runs short; its backends may be.\n\
         OOMScoreAdjust=-1000\n\
         Environment=PG_OOM_ADJUST_FILE=/proc/self/oom_score_adj\n\
         Environment=PG_OOM_ADJUST_VALUE=0\n\
         ExecStartPre={bindir}/postgresql-{major}-check-db-dir ${{PGDATA}}\n\
         ExecStart={bindir}/postgres -D ${{PGDATA}}\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         # SIGINT is PostgreSQL's fast shutdown.\n\
         KillMode=mixed\n\
         KillSignal=SIGINT\n\
         TimeoutSec=0\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        unit = unit_name(major),
        pgdata = default_pgdata(major),
    )
}

/// `postgresql-N-setup initdb`: creates the data directory the unit uses
/// (from the unit's `PGDATA`, a drop-in's included), owned by `postgres`,
/// with `initdb` of this package and `PGSETUP_INITDB_OPTIONS`. Run by root,
/// it runs `initdb` as `postgres`; run by another user, as that user.
fn setup(major: u32) -> String {
    format!(
        r#"#!/bin/sh
# postgresql-{major}-setup: prepares the PostgreSQL {major} server of package
# spock-postgresql{major}. Usage: postgresql-{major}-setup initdb
# PGSETUP_INITDB_OPTIONS (for example "--locale=C.UTF-8 --data-checksums")
# is passed to initdb; PGDATA overrides the unit's data directory.
set -e
bindir=$(cd "$(dirname "$0")" && pwd)
unit={unit}
usage() {{
    echo "usage: $(basename "$0") initdb" >&2
    exit 2
}}
[ $# -eq 1 ] || usage
[ "$1" = initdb ] || usage
if [ -z "${{PGDATA:-}}" ]; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        PGDATA=$(systemctl show -p Environment "$unit" | tr ' ' '\n' | sed -n 's/^PGDATA=//p' | tail -n 1)
    fi
    PGDATA=${{PGDATA:-{pgdata}}}
fi
if [ -f "$PGDATA/PG_VERSION" ]; then
    echo "$PGDATA already holds a database cluster (PG_VERSION $(cat "$PGDATA/PG_VERSION")); nothing done" >&2
    exit 1
fi
echo "Initializing the database cluster in $PGDATA"
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    runuser -u postgres -- "$bindir/initdb" --pgdata="$PGDATA" --auth-local=peer --auth-host=scram-sha-256 ${{PGSETUP_INITDB_OPTIONS:-}}
else
    "$bindir/initdb" --pgdata="$PGDATA" --auth-local=peer --auth-host=scram-sha-256 ${{PGSETUP_INITDB_OPTIONS:-}}
fi
echo "Done: start the server with systemctl start $unit"
"#,
        unit = unit_name(major),
        pgdata = default_pgdata(major),
    )
}

/// What the unit runs before `postgres`: the data directory must hold a
/// cluster of this major, or the start fails with a message saying how to
/// create one.
fn check_db_dir(major: u32) -> String {
    format!(
        r#"#!/bin/sh
# postgresql-{major}-check-db-dir DATADIR: exits 0 when DATADIR holds a
# PostgreSQL {major} cluster, otherwise says why and exits 1.
pgdata=${{1:-}}
if [ -z "$pgdata" ]; then
    echo "usage: $(basename "$0") DATADIR" >&2
    exit 1
fi
if [ ! -f "$pgdata/PG_VERSION" ]; then
    echo "$pgdata holds no database cluster; create it with: postgresql-{major}-setup initdb" >&2
    exit 1
fi
version=$(cat "$pgdata/PG_VERSION")
if [ "$version" != {major} ]; then
    echo "$pgdata holds a PostgreSQL $version cluster, not {major}: upgrade it with pg_upgrade, or point PGDATA elsewhere" >&2
    exit 1
fi
exit 0
"#
    )
}

/// `%post` of the server: on a first installation applies the system's preset to the unit (enabled or not).
pub fn rpm_post(major: u32) -> String {
    format!(
        "if [ \"$1\" -eq 1 ] && [ -x /usr/bin/systemctl ]; then\n\
         \x20   /usr/bin/systemctl --no-reload preset {unit} >/dev/null 2>&1 || :\n\
         fi\n\
         exit 0\n",
        unit = unit_name(major)
    )
}

/// `%preun` of the server: on erase (not upgrade), disables and stops the unit.
pub fn rpm_preun(major: u32) -> String {
    format!(
        "if [ \"$1\" -eq 0 ] && [ -x /usr/bin/systemctl ]; then\n\
         \x20   /usr/bin/systemctl --no-reload disable --now {unit} >/dev/null 2>&1 || :\n\
         fi\n\
         exit 0\n",
        unit = unit_name(major)
    )
}

/// `%postun` of the server: refreshes systemd's view of the units; after an upgrade, restarts the unit if it was running (on
/// the new binaries).
pub fn rpm_postun(major: u32) -> String {
    format!(
        "if [ -x /usr/bin/systemctl ]; then\n\
         \x20   /usr/bin/systemctl daemon-reload >/dev/null 2>&1 || :\n\
         \x20   if [ \"$1\" -ge 1 ]; then\n\
         \x20       /usr/bin/systemctl try-restart {unit} >/dev/null 2>&1 || :\n\
         \x20   fi\n\
         fi\n\
         exit 0\n",
        unit = unit_name(major)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::PkgLayout;

    #[test]
    fn the_rpm_service_files_name_the_package_paths() {
        let paths = PkgLayout::Rpm.paths(18);
        let files = rpm_files(18, &paths);
        let unit = String::from_utf8(files[0].1.clone()).unwrap();
        assert_eq!(files[0].0, "/usr/lib/systemd/system/postgresql-18.service");
        assert!(unit.contains("ExecStart=/usr/pgsql-18/bin/postgres -D ${PGDATA}"), "{unit}");
        assert!(unit.contains("ExecStartPre=/usr/pgsql-18/bin/postgresql-18-check-db-dir ${PGDATA}"));
        assert!(unit.contains("Environment=PGDATA=/var/lib/pgsql/18/data/"));
        assert_eq!(files[1].0, "/usr/pgsql-18/bin/postgresql-18-setup");
        assert_eq!(files[1].2, 0o755);
        assert!(rpm_preun(18).contains("disable --now postgresql-18.service"));
        assert!(rpm_postun(18).contains("try-restart postgresql-18.service"));
    }
}
