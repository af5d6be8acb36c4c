// A small CNI client on libcni (Debian's golang-github-appc-cni-dev), as runtimes drive plugins:
//
//	cnitool add|check|del CONFLIST CONTAINERID NETNS IFNAME
//
// CNI_PATH is the plugins' directory, CNI_CACHE libcni's cache, POD the K8S_POD_NAME argument
// and PORTS an optional JSON list of portMappings. `add` prints the result.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: cnitool add|check|del CONFLIST CONTAINERID NETNS IFNAME")
		os.Exit(2)
	}
	cmd, file, id, netns, ifname := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	list, err := libcni.ConfListFromFile(file)
	fail(err)
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE"), nil)
	ctx := context.Background()
	_, err = cni.ValidateNetworkList(ctx, list)
	fail(err)
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname, CapabilityArgs: map[string]interface{}{}}
	if pod := os.Getenv("POD"); pod != "" {
		rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", pod}}
	}
	if ports := os.Getenv("PORTS"); ports != "" {
		var pm []map[string]interface{}
		fail(json.Unmarshal([]byte(ports), &pm))
		rt.CapabilityArgs["portMappings"] = pm
	}
	switch cmd {
	case "add":
		r, err := cni.AddNetworkList(ctx, list, rt)
		fail(err)
		fail(r.Print())
	case "check":
		fail(cni.CheckNetworkList(ctx, list, rt))
	case "del":
		fail(cni.DelNetworkList(ctx, list, rt))
	default:
		fail(fmt.Errorf("unknown command %q", cmd))
	}
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnitool:", err)
		os.Exit(1)
	}
}
