package apf_test

import (
	"fmt"

	"github.com/presence-mps/presence/mps/apf"
)

// A reader accumulates bytes and parses until the buffer holds only part of
// a message.
func ExampleParse() {
	var buf []byte
	buf = (&apf.KeepaliveRequest{Cookie: 7}).Append(buf)
	buf = (&apf.TCPIPForward{WantReply: true, Address: "host", Port: 16992}).Append(buf)
	buf = append(buf, apf.MsgChannelData, 0, 0) // the start of a third message

	for {
		m, n, err := apf.Parse(buf)
		if err == apf.ErrIncomplete {
			fmt.Printf("%d bytes wait for more\n", len(buf))
			return
		}
		if err != nil {
			fmt.Println("malformed:", err)
			return
		}
		fmt.Printf("%s %+v\n", apf.TypeName(m.Type()), m)
		buf = buf[n:]
	}
	// Output:
	// KEEPALIVE_REQUEST &{Cookie:7}
	// GLOBAL_REQUEST &{Cancel:false WantReply:true Address:host Port:16992}
	// 3 bytes wait for more
}

func ExampleUUID_String() {
	u, _ := apf.ParseUUID("33221100554477668899AABBCCDDEEFF")
	fmt.Printf("wire % x\n", u[:4])
	fmt.Println(u)
	// Output:
	// wire 00 11 22 33
	// 33221100-5544-7766-8899-aabbccddeeff
}
