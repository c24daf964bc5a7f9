//! The prompt a conversation becomes: the agent's system prompt, the conversation's context as
//! a system note, and as many of the newest messages as fit the provider's budget.

use serde::Serialize;

use crate::model::conversations::Message;

/// One message of a chat-completions request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

/// Tokens are estimated as characters / 4 (rounded up), plus a little per message for framing.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

const PER_MESSAGE: u64 = 4;

fn cost(m: &ChatMessage) -> u64 {
    estimate_tokens(&m.content) + PER_MESSAGE
}

/// The prompt and its estimated size.
#[derive(Debug)]
pub struct Prompt {
    pub messages: Vec<ChatMessage>,
    pub estimated_tokens: u64,
    /// Whether older conversation messages were left out to fit the budget.
    pub truncated: bool,
}

/// Builds a prompt from the conversation's messages offered newest first, so that a caller
/// reading them from storage stops as soon as the budget is full. The system prompt, the context
/// note and the newest message are always sent; older messages follow while they fit `budget`.
pub struct PromptBuilder {
    head: Vec<ChatMessage>,
    /// newest first
    tail: Vec<ChatMessage>,
    used: u64,
    budget: u64,
    truncated: bool,
}

impl PromptBuilder {
    pub fn new(system_prompt: Option<&str>, context: &serde_json::Value, budget: u64) -> PromptBuilder {
        let mut head = vec![];
        if let Some(sp) = system_prompt.map(str::trim).filter(|s| !s.is_empty()) {
            head.push(ChatMessage { role: "system", content: sp.to_string() });
        }
        if context.as_object().is_some_and(|o| !o.is_empty()) {
            head.push(ChatMessage {
                role: "system",
                content: format!("Context of this conversation (JSON): {context}"),
            });
        }
        let used = head.iter().map(cost).sum();
        PromptBuilder { head, tail: vec![], used, budget, truncated: false }
    }

    /// Offers the next older message; `false` when it did not fit, and nothing older will.
    pub fn offer(&mut self, m: Message) -> bool {
        let msg = ChatMessage { role: m.role.as_str(), content: m.content };
        let c = cost(&msg);
        if !self.tail.is_empty() && self.used + c > self.budget {
            self.truncated = true;
            return false;
        }
        self.used += c;
        self.tail.push(msg);
        true
    }

    pub fn finish(self) -> Prompt {
        let mut messages = self.head;
        messages.extend(self.tail.into_iter().rev());
        Prompt { messages, estimated_tokens: self.used, truncated: self.truncated }
    }
}

/// [`PromptBuilder`] over `history` (oldest first, ending with the new user message).
pub fn build_prompt(
    system_prompt: Option<&str>,
    context: &serde_json::Value,
    history: &[Message],
    budget: u64,
) -> Prompt {
    let mut b = PromptBuilder::new(system_prompt, context, budget);
    for m in history.iter().rev() {
        if !b.offer(m.clone()) {
            break;
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conversations::MessageRole;

    fn msg(role: MessageRole, content: &str) -> Message {
        Message {
            id: "i".into(),
            conversation_id: "c".into(),
            role,
            content: content.into(),
            metadata: serde_json::json!({}),
            created_at: "t".into(),
        }
    }

    #[test]
    fn keeps_the_newest_messages_that_fit() {
        let history = vec![
            msg(MessageRole::User, &"a".repeat(400)),
            msg(MessageRole::Assistant, &"b".repeat(40)),
            msg(MessageRole::User, &"c".repeat(40)),
        ];
        let all = build_prompt(Some("Be brief."), &serde_json::json!({"lang": "en"}), &history, 10_000);
        assert_eq!(all.messages.len(), 5);
        assert_eq!(all.messages[0], ChatMessage { role: "system", content: "Be brief.".into() });
        assert!(all.messages[1].content.contains(r#""lang":"en""#));
        assert!(!all.truncated);
        // 100 + 4 tokens for the oldest do not fit a budget of 60
        let some = build_prompt(None, &serde_json::json!({}), &history, 60);
        assert_eq!(some.messages.iter().map(|m| m.role).collect::<Vec<_>>(), ["assistant", "user"]);
        assert!(some.truncated);
        assert_eq!(some.estimated_tokens, 28);
        // the newest message goes out even when it alone is over budget
        let one = build_prompt(None, &serde_json::json!({}), &history, 1);
        assert_eq!(one.messages.len(), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}
