//! `weft-init CONFIG_JSON`: spawned by weftd only; see `weft_runtime::init`.

fn main() {
    let Some(cfg) = std::env::args().nth(1) else {
        eprintln!("weft-init: started by weftd for each container; not meant to be run by hand");
        std::process::exit(2);
    };
    weft_runtime::init::helper_main(&cfg)
}
