//! Configuration parameters of the extension (sql-api.md §7) that the
//! replication engine uses today.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use pgrx::pg_sys;
use pgrx::pg_sys::elog::PgLogLevel;
use spock_core::conflict::LogOriginChange;

/// `spock.synchronous_commit`: apply transactions commit with
/// `synchronous_commit = local` when on, `off` when off.
pub static SYNCHRONOUS_COMMIT: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.apply_idle_timeout` (s): reconnect when nothing arrives for this long; 0 disables.
pub static APPLY_IDLE_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(300);
/// `spock.extra_connection_options`: libpq keywords put before every DSN.
pub static EXTRA_CONNECTION_OPTIONS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));
/// `spock.restart_delay_default` (ms): delay before a failed apply worker is restarted.
pub static TEMP_DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// `spock.country`: a free label of this node, returned by `spock.get_country()`.
pub static COUNTRY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"??"));

pub static PAUSE_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10);

pub static RESTART_DELAY_DEFAULT: GucSetting<i32> = GucSetting::<i32>::new(5000);
/// `spock.require_core_patches`: refuse to start workers when a core patch is missing.
pub static REQUIRE_CORE_PATCHES: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.apply_as_superuser`: apply changes with the worker's superuser
/// rights instead of each table owner's (off by default; for setups that
/// relied on the old behaviour and trust every table owner).
pub static APPLY_AS_SUPERUSER: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.enable_ddl_replication`: queue the session's DDL for subscribers.
pub static ENABLE_DDL_REPLICATION: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.include_ddl_repset`: with automatic DDL, manage set membership.
pub static INCLUDE_DDL_REPSET: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.allow_ddl_from_functions`: also queue DDL run inside functions.
pub static ALLOW_DDL_FROM_FUNCTIONS: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.enable_quiet_mode`: DDL replication messages at LOG.
pub static ENABLE_QUIET_MODE: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.deny_all_ddl`: refuse every DDL statement on this node.
pub static DENY_ALL_DDL: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `spock.conflict_resolution`: the only method is last-update-wins.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConflictResolution {
    #[name = c"last_update_wins"]
    LastUpdateWins,
}
pub static CONFLICT_RESOLUTION: GucSetting<ConflictResolution> =
    GucSetting::<ConflictResolution>::new(ConflictResolution::LastUpdateWins);

/// A server message level, for `spock.conflict_log_level`.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageLevel {
    #[name = c"debug5"]
    Debug5,
    #[name = c"debug4"]
    Debug4,
    #[name = c"debug3"]
    Debug3,
    #[name = c"debug2"]
    Debug2,
    #[name = c"debug1"]
    Debug1,
    #[name = c"info"]
    Info,
    #[name = c"notice"]
    Notice,
    #[name = c"warning"]
    Warning,
    #[name = c"error"]
    Error,
    #[name = c"log"]
    Log,
    #[name = c"fatal"]
    Fatal,
    #[name = c"panic"]
    Panic,
}

impl MessageLevel {
    pub fn level(self) -> PgLogLevel {
        match self {
            MessageLevel::Debug5 => PgLogLevel::DEBUG5,
            MessageLevel::Debug4 => PgLogLevel::DEBUG4,
            MessageLevel::Debug3 => PgLogLevel::DEBUG3,
            MessageLevel::Debug2 => PgLogLevel::DEBUG2,
            MessageLevel::Debug1 => PgLogLevel::DEBUG1,
            MessageLevel::Info => PgLogLevel::INFO,
            MessageLevel::Notice => PgLogLevel::NOTICE,
            MessageLevel::Warning => PgLogLevel::WARNING,
            MessageLevel::Error => PgLogLevel::ERROR,
            MessageLevel::Log => PgLogLevel::LOG,
            MessageLevel::Fatal => PgLogLevel::FATAL,
            MessageLevel::Panic => PgLogLevel::PANIC,
        }
    }
}

/// `spock.readonly` (behaviour.md §14).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadOnly {
    #[name = c"off"]
    Off,
    /// Transactions of non-superuser sessions are read-only.
    #[name = c"local"]
    Local,
    /// The old name of `local`.
    #[name = c"user"]
    User,
    /// As `local`, and apply workers stop applying.
    #[name = c"all"]
    All,
}

impl ReadOnly {
    /// The setting's value as written.
    pub fn name(self) -> &'static str {
        match self {
            ReadOnly::Off => "off",
            ReadOnly::Local => "local",
            ReadOnly::User => "user",
            ReadOnly::All => "all",
        }
    }
}

/// `spock.readonly`: read-only mode of this node.
pub static READONLY: GucSetting<ReadOnly> = GucSetting::<ReadOnly>::new(ReadOnly::Off);

/// `spock.conflict_log_level`: level of the message logged per conflict.
pub static CONFLICT_LOG_LEVEL: GucSetting<MessageLevel> = GucSetting::<MessageLevel>::new(MessageLevel::Log);
/// `spock.save_resolutions`: record resolvable conflicts in `spock.resolutions`.
pub static SAVE_RESOLUTIONS: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.replication_repair_mode` (internal, read-only): whether the
/// session's transaction is in repair mode (`spock.repair_mode()`).
pub static REPAIR_MODE: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.channel_counters`: collect channel statistics (`spock.get_channel_stats`).
pub static CHANNEL_COUNTERS: GucSetting<bool> = GucSetting::<bool>::new(true);
/// `spock.stats_max_entries`: capacity of the channel statistics (-1: 1000
/// per `max_worker_processes`).
pub static STATS_MAX_ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(-1);
/// `spock.resolutions_retention_days`: apply workers prune older resolutions daily; 0 disables.
pub static RESOLUTIONS_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(100);
/// `spock.read_retry_count`: extra look-ups before a row to update or delete is missing.
pub static READ_RETRY_COUNT: GucSetting<i32> = GucSetting::<i32>::new(5);

/// `spock.check_all_uc_indexes`: an INSERT that finds no row by its key
/// also probes the table's other unique indexes.
pub static CHECK_ALL_UC_INDEXES: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `spock.log_origin_change`.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum OriginChangeSetting {
    #[name = c"none"]
    None,
    #[name = c"remote_only_differs"]
    RemoteOnlyDiffers,
    #[name = c"since_sub_creation"]
    SinceSubCreation,
}
pub static LOG_ORIGIN_CHANGE: GucSetting<OriginChangeSetting> =
    GucSetting::<OriginChangeSetting>::new(OriginChangeSetting::None);

/// `spock.log_origin_change` as the conflict rule takes it.
pub fn log_origin_change() -> LogOriginChange {
    match LOG_ORIGIN_CHANGE.get() {
        OriginChangeSetting::None => LogOriginChange::None,
        OriginChangeSetting::RemoteOnlyDiffers => LogOriginChange::RemoteOnlyDiffers,
        OriginChangeSetting::SinceSubCreation => LogOriginChange::SinceSubCreation,
    }
}

/// `spock.exception_behaviour`.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExceptionBehaviour {
    #[name = c"discard"]
    Discard,
    #[name = c"transdiscard"]
    TransDiscard,
    #[name = c"sub_disable"]
    SubDisable,
}
pub static EXCEPTION_BEHAVIOUR: GucSetting<ExceptionBehaviour> =
    GucSetting::<ExceptionBehaviour>::new(ExceptionBehaviour::TransDiscard);

/// `spock.exception_logging`.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExceptionLogging {
    #[name = c"none"]
    None,
    #[name = c"discard"]
    Discard,
    #[name = c"all"]
    All,
}
pub static EXCEPTION_LOGGING: GucSetting<ExceptionLogging> =
    GucSetting::<ExceptionLogging>::new(ExceptionLogging::All);
/// `spock.exception_replay_queue_size` (MB). Accepted for compatibility:
/// a failed transaction is received again from the provider instead of
/// being kept (docs/replication.md).
pub static EXCEPTION_REPLAY_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(4);
/// `spock.restart_delay_on_exception` (ms).
pub static RESTART_DELAY_ON_EXCEPTION: GucSetting<i32> = GucSetting::<i32>::new(0);

/// The exception mode and logging as the rules take them.
pub fn exception_settings() -> (spock_core::exception::Mode, spock_core::exception::Logging) {
    use spock_core::exception::{Logging, Mode};
    let mode = match EXCEPTION_BEHAVIOUR.get() {
        ExceptionBehaviour::Discard => Mode::Discard,
        ExceptionBehaviour::TransDiscard => Mode::TransDiscard,
        ExceptionBehaviour::SubDisable => Mode::SubDisable,
    };
    let logging = match EXCEPTION_LOGGING.get() {
        ExceptionLogging::None => Logging::None,
        ExceptionLogging::Discard => Logging::Discard,
        ExceptionLogging::All => Logging::All,
    };
    (mode, logging)
}

pub fn init() {
    GucRegistry::define_enum_guc(
        c"spock.exception_behaviour",
        c"What an apply worker does with a remote transaction that fails to apply.",
        c"transdiscard: apply none of it and go on; discard: apply each change on its own and drop the failing \
          ones; sub_disable: apply none of it and disable the subscription.",
        &EXCEPTION_BEHAVIOUR,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"spock.exception_logging",
        c"Which operations of a failed remote transaction are written to spock.exception_log.",
        c"none, discard (the failing ones), all (also those discarded with them).",
        &EXCEPTION_LOGGING,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.exception_replay_queue_size",
        c"Memory for replaying a failed remote transaction (accepted; spock receives the transaction again instead).",
        c"",
        &EXCEPTION_REPLAY_QUEUE_SIZE,
        0,
        i32::MAX / 2,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"spock.restart_delay_on_exception",
        c"Milliseconds before an apply worker handles a failed remote transaction in exception mode.",
        c"",
        &RESTART_DELAY_ON_EXCEPTION,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_enum_guc(
        c"spock.conflict_resolution",
        c"How conflicts between an incoming change and the local row are resolved.",
        c"last_update_wins, the only method: the row version with the later commit timestamp wins.",
        &CONFLICT_RESOLUTION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"spock.conflict_log_level",
        c"Message level of the server-log message about each conflict.",
        c"At error or above the message also fails the apply of the transaction.",
        &CONFLICT_LOG_LEVEL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.save_resolutions",
        c"Record resolved conflicts in spock.resolutions.",
        c"",
        &SAVE_RESOLUTIONS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.replication_repair_mode",
        c"Whether the current transaction is in repair mode (set by spock.repair_mode()).",
        c"",
        &REPAIR_MODE,
        GucContext::Internal,
        GucFlags::DISALLOW_IN_FILE,
    );
    GucRegistry::define_bool_guc(
        c"spock.channel_counters",
        c"Count the rows each subscription applies and each walsender sends, per table.",
        c"Read them with spock.get_channel_stats() or the view spock.channel_table_stats.",
        &CHANNEL_COUNTERS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.stats_max_entries",
        c"How many (subscription, table) pairs the channel statistics can hold.",
        c"-1 means 1000 per max_worker_processes; pairs beyond the capacity are not counted.",
        &STATS_MAX_ENTRIES,
        -1,
        i32::MAX / 2,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.resolutions_retention_days",
        c"Days spock.resolutions rows are kept; apply workers delete older rows once a day.",
        c"0 keeps them until spock.cleanup_resolutions() is called with a number of days.",
        &RESOLUTIONS_RETENTION_DAYS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"spock.log_origin_change",
        c"Which remote updates and deletes that overwrite a row of another origin are logged.",
        c"none: never; remote_only_differs: when the overwritten version came from another remote node; \
          since_sub_creation: when it was committed after the subscription was created.",
        &LOG_ORIGIN_CHANGE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.check_all_uc_indexes",
        c"Resolve an incoming INSERT that collides on any unique index, not only the key, as insert_exists.",
        c"Probes every valid, immediate unique index on plain columns when no row has the key.",
        &CHECK_ALL_UC_INDEXES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.read_retry_count",
        c"Extra look-ups of a row to update or delete before it is declared missing.",
        c"",
        &READ_RETRY_COUNT,
        0,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.synchronous_commit",
        c"Commit applied transactions with synchronous_commit = local instead of off.",
        c"Progress reported to providers only ever covers locally flushed transactions, whatever this says.",
        &SYNCHRONOUS_COMMIT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.apply_idle_timeout",
        c"Seconds without any message from the provider after which an apply worker reconnects.",
        c"0 disables the check.",
        &APPLY_IDLE_TIMEOUT,
        0,
        i32::MAX / 1000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"spock.extra_connection_options",
        c"libpq connection options placed before every connection string spock uses.",
        c"Values in the connection string itself win.",
        &EXTRA_CONNECTION_OPTIONS,
        GucContext::Sighup,
        // It may hold credentials (sslpassword, passfile, ...).
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"spock.country",
        c"A free label for this node (for example its country), returned by spock.get_country().",
        c"",
        &COUNTRY,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"spock.temp_directory",
        c"Directory for the structure dumps of initial synchronisations (empty: the system's temporary directory).",
        c"",
        &TEMP_DIRECTORY,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.pause_timeout",
        c"Seconds pause_apply_workers() waits for the apply workers, and the longest a pause lasts.",
        c"",
        &PAUSE_TIMEOUT,
        1,
        3600,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"spock.restart_delay_default",
        c"Milliseconds before an apply worker that exited with an error is restarted.",
        c"",
        &RESTART_DELAY_DEFAULT,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"spock.require_core_patches",
        c"Refuse to start spock's workers when the server lacks one of the core patches.",
        c"When off, features that need a missing patch are disabled with a warning instead.",
        &REQUIRE_CORE_PATCHES,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.apply_as_superuser",
        c"Apply replicated changes with the apply worker's superuser rights instead of each table owner's.",
        c"Off (the default): triggers, defaults and other code reached while applying a table's changes run \
          as the table's owner in a security-restricted operation. On: they run as the superuser the worker \
          runs as; only for setups that rely on that and trust every table owner.",
        &APPLY_AS_SUPERUSER,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.enable_ddl_replication",
        c"Replicate the DDL statements this session runs to the subscribers of this node.",
        c"Each successful DDL statement is queued in spock.queue with its text, search_path and role.",
        &ENABLE_DDL_REPLICATION,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.include_ddl_repset",
        c"With automatic DDL replication, put created and altered tables into replication sets.",
        c"Tables with a replica identity index go to default, others to default_insert_only.",
        &INCLUDE_DDL_REPSET,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.allow_ddl_from_functions",
        c"With automatic DDL replication, also replicate DDL run inside functions and procedures.",
        c"",
        &ALLOW_DDL_FROM_FUNCTIONS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.enable_quiet_mode",
        c"Report replicated and not replicated DDL at LOG instead of INFO and WARNING.",
        c"",
        &ENABLE_QUIET_MODE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"spock.readonly",
        c"Read-only mode of this node: off, local (alias user) or all.",
        c"local: transactions of non-superuser sessions are read-only; all: also, apply workers stop applying \
          until the mode is relaxed. Superusers are never restricted.",
        &READONLY,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.deny_all_ddl",
        c"Refuse every DDL statement on this node.",
        c"",
        &DENY_ALL_DDL,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Whether `track_commit_timestamp` is on.
pub fn track_commit_timestamp() -> bool {
    // SAFETY: reads a setting by name; the returned string is owned by the
    // GUC machinery and only read here.
    unsafe {
        let v = pg_sys::GetConfigOption(c"track_commit_timestamp".as_ptr(), false, false);
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"on"
    }
}

/// `spock.extra_connection_options` as a string.
pub fn extra_connection_options() -> String {
    EXTRA_CONNECTION_OPTIONS.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Where structure dumps are written: `spock.temp_directory`, or the
/// system's temporary directory when it is empty.
pub fn temp_directory() -> std::path::PathBuf {
    match TEMP_DIRECTORY.get().map(|c| c.to_string_lossy().into_owned()).filter(|s| !s.is_empty()) {
        Some(dir) => dir.into(),
        None => std::env::temp_dir(),
    }
}
