pub fn handle(_ctx: sandflow_sdk::Context) -> Result<sandflow_sdk::TaskResult, String> { Err("todo".into()) }
