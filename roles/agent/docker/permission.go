package docker

import (
	"errors"
	"os"
	"strings"
)

// PermissionFix says how a user whose process may not open the engine's
// socket gets access: join the group that owns it, or use rootless Docker's
// own socket. It ends errors for which IsPermission is true.
const PermissionFix = "add the user to the docker group (sudo usermod -aG docker $USER) and log in again, " +
	"or, with rootless Docker, set DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock"

// IsPermission reports whether err says the engine's socket refused this
// process: a wrapped EACCES/EPERM (os.ErrPermission), or the moby client's
// "permission denied while trying to connect", which keeps only the text.
// A nil err is false.
func IsPermission(err error) bool {
	return err != nil && (errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied"))
}
