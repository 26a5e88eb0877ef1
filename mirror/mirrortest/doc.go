// Package mirrortest holds the mirror's tests against a real
// MongoDB-protocol server (FerretDB, in-process) and a real redis-server.
package mirrortest
