fn main() {
    // libnftables (Debian: libnftables-dev) is linked in-process: one call per change, no `nft` spawn.
    println!("cargo:rustc-link-lib=nftables");
}
