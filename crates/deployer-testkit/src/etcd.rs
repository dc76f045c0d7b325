//! A real etcd on free loopback ports (filled in by the etcd work).
