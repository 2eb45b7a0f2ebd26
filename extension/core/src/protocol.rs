//! The node-to-node replication protocol: the messages the `spock_output`
//! plugin writes into a logical replication stream and the apply worker reads.
//! `docs/protocol.md` describes the format; this module is its reference
//! implementation. Decoding never panics: truncated or malformed input is an
//! error that says what was wrong.

use std::fmt;

/// The protocol versions this build speaks.
pub const MIN_PROTO_VERSION: u32 = 1;
pub const MAX_PROTO_VERSION: u32 = 1;

/// Picks the version two nodes speak: the highest both support.
pub fn negotiate(ours: (u32, u32), theirs: (u32, u32)) -> Result<u32, String> {
    let low = ours.0.max(theirs.0);
    let high = ours.1.min(theirs.1);
    if low > high {
        return Err(format!(
            "no common protocol version: this node speaks {}..{}, the other {}..{}",
            ours.0, ours.1, theirs.0, theirs.1
        ));
    }
    Ok(high)
}

/// A position in the provider's WAL.
pub type Lsn = u64;
/// PostgreSQL `TimestampTz`: microseconds since 2000-01-01 UTC.
pub type Timestamp = i64;

/// One column value of a tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    /// A TOASTed value the change left as it was; not sent.
    Unchanged,
    /// The type's text output.
    Text(Vec<u8>),
    /// The type's binary send format.
    Binary(Vec<u8>),
}

/// A row: one value per column of the relation message, in its order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tuple(pub Vec<Value>);

/// Column flags in a relation message.
pub mod att_flags {
    /// Part of the replica identity key.
    pub const KEY: u8 = 1;
    /// Flagged `log_old_value`: its old value is sent with updates.
    pub const LOG_OLD_VALUE: u8 = 2;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// The old row an UPDATE or DELETE carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldRow {
    /// Replica identity columns (and `log_old_value` columns); others NULL.
    Key(Tuple),
    /// The whole old row (REPLICA IDENTITY FULL).
    Full(Tuple),
}

impl OldRow {
    pub fn tuple(&self) -> &Tuple {
        match self {
            OldRow::Key(t) | OldRow::Full(t) => t,
        }
    }
}

/// The prefix of the logical decoding messages that carry sync events
/// (`spock.sync_event()` writes them, the output plugin forwards them).
pub const SYNC_EVENT_PREFIX: &str = "spock.sync_event";

/// The prefix of the transactional logical messages `spock.repair_mode()`
/// writes: `on` or `off`, read by the output plugin to leave out the data
/// changes of a transaction while repair mode is on.
pub const REPAIR_MODE_PREFIX: &str = "spock.repair_mode";

/// Encodes a list of names (replication sets, origins) for a
/// `START_REPLICATION` option or `node_info().replication_sets`: each name in
/// double quotes, `"` and `\` escaped with a backslash, separated by commas.
/// Any name survives the trip, commas and quotes included.
pub fn encode_name_list<S: AsRef<str>>(names: &[S]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in name.as_ref().chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out
}

/// Decodes [`encode_name_list`]. An element may also be bare (no quotes, no
/// commas or quotes inside, surrounding blanks ignored), as older
/// subscribers sent them. Empty input is an empty list.
pub fn decode_name_list(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let skip_blanks = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    };
    skip_blanks(&mut chars);
    if chars.peek().is_none() {
        return Ok(out);
    }
    loop {
        skip_blanks(&mut chars);
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted name in name list {text:?}")),
                    Some('\\') => match chars.next() {
                        Some(c) => name.push(c),
                        None => return Err(format!("name list {text:?} ends in an escape")),
                    },
                    Some('"') => break,
                    Some(c) => name.push(c),
                }
            }
            skip_blanks(&mut chars);
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' || c == '\\' {
                    return Err(format!("unquoted name in name list {text:?} contains {c:?}"));
                }
                name.push(c);
                chars.next();
            }
            name = name.trim().to_string();
        }
        if name.is_empty() {
            return Err(format!("empty name in name list {text:?}"));
        }
        out.push(name);
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(c) => return Err(format!("unexpected {c:?} after a name in name list {text:?}")),
        }
    }
}

/// Truncate options.
pub mod truncate_flags {
    pub const CASCADE: u8 = 1;
    pub const RESTART_IDENTITY: u8 = 2;
}

/// A protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Start of a transaction.
    Begin {
        /// LSN of the commit record (where the transaction ends).
        final_lsn: Lsn,
        /// Origin commit timestamp.
        commit_time: Timestamp,
        xid: u32,
        /// Node id of the origin when the provider forwards a transaction it
        /// applied from another node; 0 for the provider's own transactions.
        origin_node: u32,
        /// The commit LSN on the origin node, when forwarded; 0 otherwise.
        origin_lsn: Lsn,
    },
    /// End of a transaction.
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: Timestamp,
    },
    /// Describes a relation before its first change in a stream (and again
    /// after its definition changed).
    Relation {
        relid: u32,
        nspname: String,
        relname: String,
        columns: Vec<Column>,
    },
    Insert {
        relid: u32,
        new: Tuple,
    },
    Update {
        relid: u32,
        old: Option<OldRow>,
        new: Tuple,
    },
    Delete {
        relid: u32,
        old: OldRow,
    },
    Truncate {
        flags: u8,
        relids: Vec<u32>,
    },
    /// A sync event (behaviour.md §12) at `lsn` of the provider's WAL.
    SyncEvent {
        lsn: Lsn,
    },
    /// A row of the provider's `spock.queue` (behaviour.md §10.2), sent in
    /// the transaction that inserted it.
    Queue(QueueRow),
}

/// The columns of a `spock.queue` row (sql-api.md §6.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    pub queued_at: Timestamp,
    pub role: String,
    /// `None`: every subscription.
    pub replication_sets: Option<Vec<String>>,
    /// `spock_core::ddl::MessageType` code.
    pub message_type: u8,
    /// The `message` column's JSON text.
    pub message: String,
}

/// Why a message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed spock protocol message at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------
// Encoding

/// Appends messages to a buffer (the output plugin's write buffer).
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}
fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a value the way tuples carry it; the apply side reads it with
/// [`Reader::value`]. Exposed so the output plugin can stream column values
/// without building a [`Tuple`].
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => put_u8(out, b'n'),
        Value::Unchanged => put_u8(out, b'u'),
        Value::Text(bytes) => {
            put_u8(out, b't');
            put_u32(out, bytes.len() as u32);
            out.extend_from_slice(bytes);
        }
        Value::Binary(bytes) => {
            put_u8(out, b'b');
            put_u32(out, bytes.len() as u32);
            out.extend_from_slice(bytes);
        }
    }
}

fn put_tuple(out: &mut Vec<u8>, t: &Tuple) {
    put_u16(out, t.0.len() as u16);
    for v in &t.0 {
        put_value(out, v);
    }
}

impl Encode for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Begin { final_lsn, commit_time, xid, origin_node, origin_lsn } => {
                put_u8(out, b'B');
                put_u64(out, *final_lsn);
                put_i64(out, *commit_time);
                put_u32(out, *xid);
                put_u32(out, *origin_node);
                put_u64(out, *origin_lsn);
            }
            Message::Commit { commit_lsn, end_lsn, commit_time } => {
                put_u8(out, b'C');
                put_u64(out, *commit_lsn);
                put_u64(out, *end_lsn);
                put_i64(out, *commit_time);
            }
            Message::Relation { relid, nspname, relname, columns } => {
                put_u8(out, b'R');
                put_u32(out, *relid);
                put_str(out, nspname);
                put_str(out, relname);
                put_u16(out, columns.len() as u16);
                for c in columns {
                    put_u8(out, c.flags);
                    put_str(out, &c.name);
                    put_u32(out, c.type_oid);
                    put_i32(out, c.typmod);
                }
            }
            Message::Insert { relid, new } => {
                put_u8(out, b'I');
                put_u32(out, *relid);
                put_tuple(out, new);
            }
            Message::Update { relid, old, new } => {
                put_u8(out, b'U');
                put_u32(out, *relid);
                match old {
                    None => {}
                    Some(OldRow::Key(t)) => {
                        put_u8(out, b'K');
                        put_tuple(out, t);
                    }
                    Some(OldRow::Full(t)) => {
                        put_u8(out, b'O');
                        put_tuple(out, t);
                    }
                }
                put_u8(out, b'N');
                put_tuple(out, new);
            }
            Message::Delete { relid, old } => {
                put_u8(out, b'D');
                put_u32(out, *relid);
                match old {
                    OldRow::Key(_) => put_u8(out, b'K'),
                    OldRow::Full(_) => put_u8(out, b'O'),
                }
                put_tuple(out, old.tuple());
            }
            Message::Truncate { flags, relids } => {
                put_u8(out, b'T');
                put_u8(out, *flags);
                put_u32(out, relids.len() as u32);
                for r in relids {
                    put_u32(out, *r);
                }
            }
            Message::SyncEvent { lsn } => {
                put_u8(out, b'Y');
                put_u64(out, *lsn);
            }
            Message::Queue(q) => {
                put_u8(out, b'Q');
                put_i64(out, q.queued_at);
                put_str(out, &q.role);
                match &q.replication_sets {
                    None => put_u8(out, 0),
                    Some(sets) => {
                        put_u8(out, 1);
                        put_u32(out, sets.len() as u32);
                        for s in sets {
                            put_str(out, s);
                        }
                    }
                }
                put_u8(out, q.message_type);
                put_str(out, &q.message);
            }
        }
    }
}

impl Message {
    /// The encoded message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// A cursor over one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Upper bound on a declared element count, so that garbage cannot make the
/// decoder reserve huge amounts of memory before it finds the data missing.
const MAX_ELEMENTS: usize = 1 << 20;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn err<T>(&self, what: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError { offset: self.pos, what: what.into() })
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return self
                .err(format!("truncated {what}: needs {n} bytes, {} left", self.buf.len() - self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = self.u32(what)? as usize;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError { offset: start, what: format!("{what} is not valid UTF-8") })
    }
    fn count(&mut self, n: usize, what: &str) -> Result<usize, DecodeError> {
        if n > MAX_ELEMENTS {
            return self.err(format!("{what} count {n} is implausible"));
        }
        Ok(n)
    }

    /// One column value.
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        match self.u8("value kind")? {
            b'n' => Ok(Value::Null),
            b'u' => Ok(Value::Unchanged),
            b't' => {
                let len = self.u32("text value length")? as usize;
                Ok(Value::Text(self.take(len, "text value")?.to_vec()))
            }
            b'b' => {
                let len = self.u32("binary value length")? as usize;
                Ok(Value::Binary(self.take(len, "binary value")?.to_vec()))
            }
            other => {
                self.pos -= 1;
                self.err(format!("unknown value kind {other:#04x}"))
            }
        }
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.u16("column count")? as usize;
        let n = self.count(n, "column")?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(self.value()?);
        }
        Ok(Tuple(values))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<(), DecodeError> {
        let got = self.u8(what)?;
        if got != tag {
            self.pos -= 1;
            return self.err(format!("expected {what} marker {:?}, found {got:#04x}", tag as char));
        }
        Ok(())
    }

    fn old_row(&mut self, what: &str) -> Result<OldRow, DecodeError> {
        match self.u8(what)? {
            b'K' => Ok(OldRow::Key(self.tuple()?)),
            b'O' => Ok(OldRow::Full(self.tuple()?)),
            other => {
                self.pos -= 1;
                self.err(format!("expected old row marker 'K' or 'O', found {other:#04x}"))
            }
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return self.err(format!("{} trailing bytes", self.buf.len() - self.pos));
        }
        Ok(())
    }
}

/// Decodes one complete message; trailing bytes are an error.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(buf);
    let msg = read_message(&mut r)?;
    r.finish()?;
    Ok(msg)
}

/// Decodes the messages of one stream payload: one or more messages back to
/// back (the provider batches the messages of a transaction). Any error,
/// including a message cut short at the end, fails the whole payload.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Message>, DecodeError> {
    let mut r = Reader::new(buf);
    if buf.is_empty() {
        return r.err("empty payload: expected at least one message");
    }
    let mut out = Vec::new();
    while r.pos < buf.len() {
        out.push(read_message(&mut r)?);
    }
    Ok(out)
}

fn read_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let start = r.pos;
    let msg = match r.u8("message tag")? {
        b'B' => Message::Begin {
            final_lsn: r.u64("begin final LSN")?,
            commit_time: r.i64("begin commit time")?,
            xid: r.u32("begin xid")?,
            origin_node: r.u32("begin origin node")?,
            origin_lsn: r.u64("begin origin LSN")?,
        },
        b'C' => Message::Commit {
            commit_lsn: r.u64("commit LSN")?,
            end_lsn: r.u64("commit end LSN")?,
            commit_time: r.i64("commit time")?,
        },
        b'R' => {
            let relid = r.u32("relation id")?;
            let nspname = r.string("schema name")?;
            let relname = r.string("relation name")?;
            let n = r.u16("column count")? as usize;
            let n = r.count(n, "column")?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                columns.push(Column {
                    flags: r.u8("column flags")?,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type")?,
                    typmod: r.i32("column typmod")?,
                });
            }
            Message::Relation { relid, nspname, relname, columns }
        }
        b'I' => {
            let relid = r.u32("relation id")?;
            Message::Insert { relid, new: r.tuple()? }
        }
        b'U' => {
            let relid = r.u32("relation id")?;
            let old = match r.buf.get(r.pos) {
                Some(b'K') | Some(b'O') => Some(r.old_row("old row")?),
                _ => None,
            };
            r.expect(b'N', "new row")?;
            Message::Update { relid, old, new: r.tuple()? }
        }
        b'D' => {
            let relid = r.u32("relation id")?;
            Message::Delete { relid, old: r.old_row("old row")? }
        }
        b'T' => {
            let flags = r.u8("truncate flags")?;
            let n = r.u32("relation count")? as usize;
            let n = r.count(n, "relation")?;
            let mut relids = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                relids.push(r.u32("relation id")?);
            }
            Message::Truncate { flags, relids }
        }
        b'Y' => Message::SyncEvent { lsn: r.u64("sync event LSN")? },
        b'Q' => {
            let queued_at = r.i64("queue time")?;
            let role = r.string("queue role")?;
            let replication_sets = match r.u8("queue set list marker")? {
                0 => None,
                1 => {
                    let n = r.u32("queue set count")? as usize;
                    let n = r.count(n, "queue set")?;
                    let mut sets = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        sets.push(r.string("queue set name")?);
                    }
                    Some(sets)
                }
                other => {
                    r.pos -= 1;
                    return r.err(format!("expected queue set list marker 0 or 1, found {other:#04x}"));
                }
            };
            let message_type = r.u8("queue message type")?;
            let message = r.string("queue message")?;
            Message::Queue(QueueRow { queued_at, role, replication_sets, message_type, message })
        }
        other => {
            return Err(DecodeError { offset: start, what: format!("unknown message tag {other:#04x}") });
        }
    };
    Ok(msg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_lists_survive_any_name() {
        let names = ["default", "with,comma", "with \"quote\"", "back\\slash", " spaced ", "ünï"];
        let encoded = encode_name_list(&names);
        assert_eq!(decode_name_list(&encoded).unwrap(), names);
        assert_eq!(encode_name_list(&["a", "b"]), r#""a","b""#);
        assert_eq!(encode_name_list::<&str>(&[]), "");
        assert_eq!(decode_name_list("").unwrap(), Vec::<String>::new());
        assert_eq!(decode_name_list("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bare_name_lists_are_read_too() {
        assert_eq!(
            decode_name_list("default, default_insert_only,ddl_sql").unwrap(),
            ["default", "default_insert_only", "ddl_sql"]
        );
        assert_eq!(decode_name_list(r#"a, "b,c""#).unwrap(), ["a", "b,c"]);
    }

    #[test]
    fn malformed_name_lists_are_errors() {
        for bad in [r#""open"#, r#""a"x"#, "a,,b", "a,", r#"a"b"#, r#""a\"#, r#""""#] {
            assert!(decode_name_list(bad).is_err(), "{bad:?} was accepted");
        }
    }

    use super::*;

    #[test]
    fn batches_decode_in_order_and_fail_as_a_whole() {
        let msgs = samples();
        let mut buf = Vec::new();
        for m in &msgs {
            m.encode(&mut buf);
        }
        assert_eq!(decode_all(&buf).unwrap(), msgs);
        // Cut anywhere inside the last message: an error, never a panic or a
        // silently shorter batch.
        let last = msgs.last().unwrap().to_bytes().len();
        for cut in 1..last {
            assert!(decode_all(&buf[..buf.len() - cut]).is_err(), "cut {cut}");
        }
        assert!(decode_all(&[]).is_err());
        // A single message is a batch of one.
        assert_eq!(decode_all(&msgs[0].to_bytes()).unwrap(), vec![msgs[0].clone()]);
    }

    fn samples() -> Vec<Message> {
        let tuple = Tuple(vec![
            Value::Text(b"42".to_vec()),
            Value::Null,
            Value::Unchanged,
            Value::Binary(vec![0, 1, 2, 255]),
            Value::Text(Vec::new()),
        ]);
        vec![
            Message::Begin {
                final_lsn: 0x1_6B37_4D48,
                commit_time: 817_000_000_123_456,
                xid: 750,
                origin_node: 0,
                origin_lsn: 0,
            },
            Message::Begin {
                final_lsn: u64::MAX,
                commit_time: -1,
                xid: u32::MAX,
                origin_node: 49_152,
                origin_lsn: 7,
            },
            Message::Commit { commit_lsn: 10, end_lsn: 20, commit_time: 30 },
            Message::Relation {
                relid: 16_384,
                nspname: "public".into(),
                relname: "accounts ü".into(),
                columns: vec![
                    Column { flags: att_flags::KEY, name: "id".into(), type_oid: 23, typmod: -1 },
                    Column {
                        flags: att_flags::LOG_OLD_VALUE,
                        name: "balance".into(),
                        type_oid: 1700,
                        typmod: 655_366,
                    },
                ],
            },
            Message::Relation { relid: 1, nspname: String::new(), relname: "t".into(), columns: vec![] },
            Message::Insert { relid: 16_384, new: tuple.clone() },
            Message::Update { relid: 16_384, old: None, new: tuple.clone() },
            Message::Update { relid: 16_384, old: Some(OldRow::Key(tuple.clone())), new: tuple.clone() },
            Message::Update {
                relid: 16_384,
                old: Some(OldRow::Full(Tuple::default())),
                new: Tuple::default(),
            },
            Message::Delete { relid: 9, old: OldRow::Key(tuple.clone()) },
            Message::Delete { relid: 9, old: OldRow::Full(tuple) },
            Message::Truncate { flags: truncate_flags::RESTART_IDENTITY, relids: vec![1, 2, 3] },
            Message::Truncate { flags: 0, relids: vec![] },
            Message::SyncEvent { lsn: 0xDEAD_BEEF },
            Message::Queue(QueueRow {
                queued_at: 42,
                role: "alice".into(),
                replication_sets: Some(vec!["default".into(), "ddl_sql".into()]),
                message_type: b'D',
                message: r#""SET search_path TO public; CREATE TABLE t (i int)""#.into(),
            }),
            Message::Queue(QueueRow {
                queued_at: -1,
                role: String::new(),
                replication_sets: None,
                message_type: b'Q',
                message: String::new(),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in samples() {
            let bytes = msg.to_bytes();
            assert_eq!(decode(&bytes), Ok(msg.clone()), "{msg:?}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for msg in samples() {
            let bytes = msg.to_bytes();
            for cut in 0..bytes.len() {
                let err = decode(&bytes[..cut]).unwrap_err();
                assert!(err.offset <= cut, "{msg:?} cut at {cut}: {err}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).unwrap_err().what.contains("trailing"), "{msg:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A small deterministic generator (xorshift), so the test is repeatable.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let tags = b"BCRIUDTYKONnutbX";
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = buf.first_mut() {
                *first = tags[(next() % tags.len() as u64) as usize];
            }
            let _ = decode(&buf);
        }
        // Mutating valid messages byte by byte must not panic either.
        for msg in samples() {
            let bytes = msg.to_bytes();
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut b = bytes.clone();
                    b[i] ^= flip;
                    let _ = decode(&b);
                }
            }
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut buf = vec![b'T', 0];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&buf).unwrap_err().what.contains("implausible"));
        let mut buf = vec![b'I'];
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&3u16.to_be_bytes());
        buf.extend_from_slice(b"t\xff\xff\xff\xff");
        assert!(decode(&buf).unwrap_err().what.contains("truncated text value"));
    }

    #[test]
    fn errors_say_what_was_wrong() {
        assert_eq!(
            decode(&[]).unwrap_err().to_string(),
            "malformed spock protocol message at byte 0: truncated message tag: needs 1 bytes, 0 left"
        );
        assert!(decode(b"Z").unwrap_err().what.contains("unknown message tag 0x5a"));
        let mut bad_utf8 = vec![b'R', 0, 0, 0, 1, 0, 0, 0, 1, 0xff];
        bad_utf8.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        assert!(decode(&bad_utf8).unwrap_err().what.contains("UTF-8"));
    }

    #[test]
    fn versions_are_negotiated() {
        assert_eq!(negotiate((1, 3), (2, 5)), Ok(3));
        assert_eq!(negotiate((1, 1), (1, 1)), Ok(1));
        let err = negotiate((1, 1), (2, 3)).unwrap_err();
        assert!(err.contains("1..1") && err.contains("2..3"), "{err}");
    }
}
