//! The prompt a conversation becomes: the agent's system prompt, the conversation's context as
//! a system note, and as many of the newest messages as fit the provider's budget.

use serde::Serialize;

use crate::api::conversations::Message;

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
    /// How many conversation messages were left out to fit the budget.
    pub omitted: usize,
}

/// Builds the prompt from `history` (oldest first, ending with the new user message). The system
/// prompt, the context note and the newest message are always sent; older messages follow from
/// newest to oldest while they fit `budget`.
pub fn build_prompt(
    system_prompt: Option<&str>,
    context: &serde_json::Value,
    history: &[Message],
    budget: u64,
) -> Prompt {
    let mut head = vec![];
    if let Some(sp) = system_prompt.map(str::trim).filter(|s| !s.is_empty()) {
        head.push(ChatMessage { role: "system", content: sp.to_string() });
    }
    if context.as_object().is_some_and(|o| !o.is_empty()) {
        head.push(ChatMessage { role: "system", content: format!("Context of this conversation (JSON): {context}") });
    }
    let mut used: u64 = head.iter().map(cost).sum();
    let mut tail: Vec<ChatMessage> = vec![];
    for (i, m) in history.iter().enumerate().rev() {
        let msg = ChatMessage { role: m.role.as_str(), content: m.content.clone() };
        let c = cost(&msg);
        let newest = i + 1 == history.len();
        if !newest && used + c > budget {
            break;
        }
        used += c;
        tail.push(msg);
    }
    let omitted = history.len() - tail.len();
    tail.reverse();
    head.extend(tail);
    Prompt { messages: head, estimated_tokens: used, omitted }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conversations::MessageRole;

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
        assert_eq!(all.omitted, 0);
        // 100 + 4 tokens for the oldest do not fit a budget of 60
        let some = build_prompt(None, &serde_json::json!({}), &history, 60);
        assert_eq!(some.messages.iter().map(|m| m.role).collect::<Vec<_>>(), ["assistant", "user"]);
        assert_eq!(some.omitted, 1);
        assert_eq!(some.estimated_tokens, 28);
        // the newest message goes out even when it alone is over budget
        let one = build_prompt(None, &serde_json::json!({}), &history, 1);
        assert_eq!(one.messages.len(), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}
