package userattrs

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// ErrBadCursor is a history cursor this service did not give out for this
// user's history.
var ErrBadCursor = errors.New("not a cursor of this user's history")

// sealCursor returns the cursor of the page after the record of user with
// seq: one AES block of the seq and a hash of the user, so that a cursor
// tells nothing of how many changes the service has recorded, and one made
// up, changed, or taken from another user's history does not open.
func sealCursor(key []byte, user string, seq int64) string {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // CursorKey returns 16 bytes
	}
	var plain, sealed [aes.BlockSize]byte
	binary.BigEndian.PutUint64(plain[:8], uint64(seq))
	userHash := sha256.Sum256([]byte(user))
	copy(plain[8:], userHash[:8])
	block.Encrypt(sealed[:], plain[:])
	return base64.RawURLEncoding.EncodeToString(sealed[:])
}

// openCursor returns the seq a cursor of sealCursor seals, or
// ErrBadCursor.
func openCursor(key []byte, user, cursor string) (int64, error) {
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(sealed) != aes.BlockSize {
		return 0, ErrBadCursor
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return 0, err
	}
	var plain [aes.BlockSize]byte
	block.Decrypt(plain[:], sealed)
	userHash := sha256.Sum256([]byte(user))
	seq := int64(binary.BigEndian.Uint64(plain[:8]))
	if !bytes.Equal(plain[8:], userHash[:8]) || seq <= 0 {
		return 0, ErrBadCursor
	}
	return seq, nil
}
