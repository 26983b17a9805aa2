#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    llmroute::setup::install_panic_hook();
    let cli = llmroute::cli::parse();
    std::process::exit(llmroute::app::main(cli));
}
