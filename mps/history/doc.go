// Package history keeps the record of devices' tunnels (up, down, auth
// failures) and of console sessions in a bbolt file in the data dir, and
// answers the questions asked of it: a device's timeline, its
// availability, the latest events, the sessions of a device or an account.
// It knows neither mps nor proxy: the caller converts their events into
// [TunnelEvent] and [SessionRecord].
//
// # Opening
//
// [Open] takes the file's lock with a timeout (1 s by default); when another
// process, or another Store in this one, holds it, the error wraps
// [ErrLocked] instead of hanging. The file is created with mode 0600. Open
// then applies retention and, when more than half of the file (and more
// than 16 MiB) is free, compacts it: bbolt reuses free pages but never
// shrinks a file, so Open copies the live data into path+".compact" with
// bbolt.Compact and renames the copy over the file. The copy is locked
// before the rename, so the file is never unlocked; a crash during
// compaction leaves the old file intact and a stale copy that the next Open
// removes.
//
// # Layout
//
// Every record is identified by 16 bytes: its time as big-endian Unix
// nanoseconds with the sign bit flipped (so keys sort by time, before 1970
// included), then a big-endian sequence number (events: the events
// bucket's sequence, which keeps same-instant events in the order they
// were added) or session ID. Index keys are a length byte, a device or user
// name (at most 255 bytes) and that identity, with an empty value; a
// query seeks to its prefix and time and walks a contiguous range.
//
//	meta                "format" → 1 (the layout version)
//	events              time|seq → event
//	events-by-device    len|device|time|seq → ""
//	sessions            start|ID → session
//	sessions-by-device  len|device|start|ID → ""
//	sessions-by-user    len|user|start|ID → ""  (sessions with a user)
//
// Values are a compact binary encoding that starts with a version byte;
// later versions only append fields (see record.go). A session recorded
// again with the same Start and ID replaces the earlier record, so a
// session may be written when it opens and again when it ends. Strings are
// cut to 1 KiB (device and user names to 255 bytes) and ports to 256, and
// every query returns at most [MaxLimit] records.
//
// # Writing
//
// [Store.Add] and [Store.AddSession] never touch the disk: they put the
// record on a bounded queue (64 Ki records by default, room for 10,000
// devices reconnecting at once three times over) and return. When the
// queue is full the record is dropped and counted in Stats().Dropped, so a
// tunnel never stalls on history. One writer goroutine commits batches in
// one bbolt transaction each: a batch closes at 1,000 records, 100 ms after
// its first record, or at a [Store.Flush]. The writer also prunes, hourly.
//
// # Retention
//
// Records older than MaxAge (90 days) go, then, while the file's data
// exceeds MaxBytes (256 MiB, about 850,000 events), the oldest records go,
// events and sessions alike, down to 90 % of it. Retention runs at Open and
// every PruneInterval.
//
// # Guarantees
//
// A committed batch survives a crash of the process or the machine (bbolt
// syncs every commit) and the file stays consistent. A crash loses only
// what was not yet committed: the records still queued and the open batch,
// which is at most one batch interval's worth plus what the queue held.
// [Store.Flush] returns once everything queued before it is committed;
// [Store.Close] commits everything queued and closes the file.
package history
