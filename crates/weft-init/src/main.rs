//! `weft-init`: spawned by weftd only, with its config on stdin; see `weft_runtime::init`.

fn main() {
    if std::env::args().len() > 1 {
        eprintln!("weft-init: started by weftd for each container; not meant to be run by hand");
        std::process::exit(2);
    }
    weft_runtime::init::helper_main()
}
