package loop

import "errors"

// ErrNotJoinable is returned by Engine.Join when the loops cannot take a
// tunnel: they are gone, or there are none (off Linux). The caller then
// copies the tunnel itself.
var ErrNotJoinable = errors.New("loop: tunnel cannot be joined")
