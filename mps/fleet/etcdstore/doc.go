// Package etcdstore keeps the fleet's ownership table in etcd: which
// instance holds which device's tunnel ([fleet.Owner]), and which instances
// are in the fleet ([fleet.Member]). The key model is the one in
// ../../../../shared/fleet.md §4, under a prefix ("/presence/" by
// default):
//
//	<prefix>v1/instances/<id>   Member JSON, on the instance's lease
//	<prefix>v1/devices/<guid>   Owner JSON, on the holder's lease
//
// Each instance has one lease, kept alive by a concurrency.Session (TTL
// about 10 s), so a dead instance's keys go with its lease. Every write to
// a device key is a Txn with a compare, never a bare Put:
//
//   - a claim creates the key only if it is absent (CreateRevision == 0);
//   - a newer connection takes an older one's key over only if the key is
//     unchanged since it was read (ModRevision == seen); the older owner
//     sees the overwrite and is told through [Config.Moved];
//   - a release deletes the key only if it still holds our value, so a
//     late disconnect never deletes a newer owner's key.
//
// Claims and releases never block the caller: a worker commits them in
// batches of at most 128 operations per Txn (etcd's --max-txn-ops). A
// prefix Watch keeps a local copy of the table, which [Store.Lookup],
// [Store.LookupHost] and [Store.Members] read without a round trip to
// etcd. When the session is lost, the store opens a new one and registers
// every device it holds again; while etcd is unreachable it keeps the
// claims (up to [Config.QueueSize] pending) and says so through
// [Store.Status].
//
// The client is go.etcd.io/etcd/client/v3 v3.7.3, which works against
// Debian's etcd 3.4.23 as long as RejectOldCluster stays unset (3.4 is
// older than the client supports officially).
package etcdstore
