//! Test tools for the tool-loop tests: each records the arguments it was
//! called with and answers as told (the real tools are tested on their own).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use concierto_agent::tools::{Tool, ToolCx, ToolError, ToolSpec, Toolbox};
use serde_json::{Value, json};

/// A tool that records its arguments and gives a fixed answer or error.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub name: String,
    pub answer: Result<String, String>,
    pub delay: Duration,
    pub calls: Arc<Mutex<Vec<Value>>>,
}

impl Recorder {
    /// Answering `answer`.
    pub fn ok(name: &str, answer: &str) -> Recorder {
        Recorder {
            name: name.into(),
            answer: Ok(answer.into()),
            delay: Duration::ZERO,
            calls: Arc::default(),
        }
    }

    /// Failing with `why`.
    pub fn failing(name: &str, why: &str) -> Recorder {
        Recorder {
            answer: Err(why.into()),
            ..Recorder::ok(name, "")
        }
    }

    /// Answering after `d`.
    pub fn after(mut self, d: Duration) -> Recorder {
        self.delay = d;
        self
    }

    /// The arguments of every call so far.
    pub fn seen(&self) -> Vec<Value> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Tool for Recorder {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: format!("The test tool {}.", self.name),
            input_schema: json!({
                "type": "object",
                "properties": {"query": {"type": "string"}, "path": {"type": "string"}},
            }),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        self.calls.lock().expect("lock").push(args);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.answer.clone().map_err(ToolError)
    }
}

/// `Write`: sets the step's deliverable to `args.content`.
#[derive(Debug)]
pub struct WriteDeliverable;

#[async_trait]
impl Tool for WriteDeliverable {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "Write".into(),
            description: "Writes the step's deliverable.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"content": {"type": "string"}},
                "required": ["content"],
            }),
        }
    }

    async fn call(&self, args: Value, cx: &ToolCx) -> Result<String, ToolError> {
        let content = args
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::new("`content` (a string) is required"))?;
        *cx.deliverable.lock().expect("lock") = Some(content.to_string());
        Ok(format!("wrote {} bytes", content.len()))
    }
}

/// A toolbox of these tools with `max_calls`.
pub fn toolbox(tools: Vec<Arc<dyn Tool>>, max_calls: u32) -> Toolbox {
    let mut b = Toolbox::new();
    b.max_calls = max_calls;
    for t in tools {
        b.push(t);
    }
    b
}
