package redir_test

import (
	"bufio"
	"bytes"
	"fmt"

	"github.com/presence-mps/presence/mps/redir"
)

// A console answers a device's digest challenge: it reads the challenge,
// computes the response and builds step 3 (redirection.md §2).
func ExampleDigest_ResponseFor() {
	device := bytes.NewReader(redir.Marshal(&redir.AuthenticateReply{
		Status: redir.StatusAuthFailed,
		Type:   redir.AuthDigest,
		Data:   redir.Challenge{Realm: "Digest:F3EB554784E729164447A89F60B641C5", Nonce: "Ym9ndXNub25jZTAxMjM0NTY3ODlhYmNk", QOP: redir.QOPAuth}.Append(nil),
	}))

	m, _, err := redir.ReadMessage(bufio.NewReader(device), redir.MsgAuthenticateReply)
	if err != nil {
		fmt.Println(err)
		return
	}
	reply, ok := m.(*redir.AuthenticateReply)
	if !ok {
		return // ReadMessage returned only that code
	}
	ch, err := redir.ParseChallenge(reply.Data)
	if err != nil {
		fmt.Println(err)
		return
	}
	d := redir.Digest{User: "admin", Realm: ch.Realm, Nonce: ch.Nonce, URI: redir.DigestURI,
		CNonce: "232555f36a0bb24f621267ffeed5c06e", NC: "00000002", QOP: redir.QOPAuth}
	d.Response = d.ResponseFor(redir.AuthDigest, []byte("P@ssw0rd"))
	step3 := redir.Marshal(&redir.Authenticate{Type: redir.AuthDigest, Data: d.Append(nil, redir.AuthDigest)})

	fmt.Println("challenge status", reply.Status, "realm", ch.Realm)
	fmt.Println("response", d.Response)
	fmt.Printf("step 3: %d bytes, L = %#x\n", len(step3), step3[5])
	// Output:
	// challenge status 1 realm Digest:F3EB554784E729164447A89F60B641C5
	// response e925b529e0947751c5e97973f0b53b6d
	// step 3: 188 bytes, L = 0xb3
}

// Len tells from the first bytes how long a message is, so a reader of a
// stream split at any byte knows when it has one whole.
func ExampleLen() {
	stream := []byte{0x2a, 0, 0, 0, 2, 0, 0, 0, 5, 0, 'H', 'e'} // 0x2A, cut short
	for _, k := range []int{1, 10} {
		n, err := redir.Len(stream[:k])
		fmt.Println(k, "bytes:", n, err)
	}
	// Output:
	// 1 bytes: 0 redir: incomplete message
	// 10 bytes: 15 <nil>
}
