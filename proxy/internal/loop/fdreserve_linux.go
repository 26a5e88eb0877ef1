//go:build linux

package loop

import (
	"errors"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// fdReserve holds one descriptor (on /dev/null) that the event loops give
// up when the process runs out of descriptors, so a connection being
// handed over is not lost then: net.FileConn duplicates the socket before
// the loop's copy is closed, and that duplicate needs a free descriptor for
// a moment. When the accept backs off (accept.go) every descriptor is
// taken, and without the reserve a kept-alive client's next request that
// the loop hands over (sessions/info, a WebSocket upgrade, a chunked
// upload) would end in a closed connection. The same trick as libuv's and
// nginx's reserved descriptor.
//
// It is safe for concurrent use.
type fdReserve struct {
	mu sync.Mutex
	fd int // -1: given up and not yet taken back
}

func newFDReserve() *fdReserve {
	r := &fdReserve{fd: -1}
	r.refill()
	return r
}

// refill takes the reserve back if it was given up; r.mu is held or r is
// not shared yet.
func (r *fdReserve) refill() {
	if r.fd < 0 {
		if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			r.fd = fd
		}
	}
}

// fileConn returns fd as a net.Conn; fd itself is closed either way. Out
// of descriptors, it gives up the reserve for the duplicate, and takes it
// back with the descriptor fd frees.
func (r *fdReserve) fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	if err != nil && (errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) {
		r.mu.Lock()
		if r.fd >= 0 {
			unix.Close(r.fd)
			r.fd = -1
			nc, err = net.FileConn(f)
		}
		f.Close()
		r.refill()
		r.mu.Unlock()
		return nc, err
	}
	f.Close()
	if err == nil {
		r.mu.Lock()
		r.refill()
		r.mu.Unlock()
	}
	return nc, err
}

// close releases the reserve.
func (r *fdReserve) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
