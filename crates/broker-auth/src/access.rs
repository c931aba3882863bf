//! [`Access`]: who is asking, and what each kind of asker may do.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Claims, Pattern, Refusal, Scopes};

/// Who is asking, as far as authorization goes: what [`Verifier::access`](crate::Verifier::access)
/// makes of a request's token, or [`Access::Open`] when no verifier is configured.
///
/// Exhaustive on purpose: the transport decides per kind whether a stream needs a filter.
#[derive(Clone, Debug)]
pub enum Access {
    /// Authorization is not configured: everything is allowed.
    Open,
    /// No token: only these public events may be received.
    Anonymous(Arc<[Pattern]>),
    /// A verified token.
    Token(Box<Claims>),
}

impl Access {
    /// Fails with [`Refusal::MissingToken`] unless a token was presented (or authorization is
    /// off).
    pub fn require_token(&self) -> Result<(), Refusal> {
        match self {
            Access::Anonymous(_) => Err(Refusal::MissingToken),
            Access::Open | Access::Token(_) => Ok(()),
        }
    }

    /// Whether `event` may be inserted.
    pub fn may_insert(&self, event: &str) -> Result<(), Refusal> {
        self.check(event, "insert", |scopes| &scopes.insert)
    }

    /// Whether the audit log of `event` may be read.
    pub fn may_audit(&self, event: &str) -> Result<(), Refusal> {
        self.check(event, "read the audit log of", |scopes| &scopes.audit)
    }

    /// Whether the audit log of every event, those to come included, may be read: with a
    /// token, only when one of its audit patterns is `*`. A copy of the whole database, which
    /// holds every version of every event, needs this.
    pub fn may_audit_every_event(&self) -> Result<(), Refusal> {
        match self {
            Access::Open => Ok(()),
            Access::Anonymous(_) => Err(Refusal::MissingToken),
            Access::Token(claims)
                if claims.broker.audit.iter().any(Pattern::matches_everything) =>
            {
                Ok(())
            }
            Access::Token(_) => Err(Refusal::InsufficientScope(
                "the token may not read the audit log of every event: that needs the audit \
                 pattern `*`"
                    .to_owned(),
            )),
        }
    }

    /// Whether an event stream may ask for `event` by name: a client without a token learns that
    /// it needs one, since a token might allow the event.
    pub fn may_subscribe(&self, event: &str) -> Result<(), Refusal> {
        if self.may_receive(event) {
            return Ok(());
        }
        self.require_token()?;
        Err(insufficient_scope("receive", event))
    }

    /// Whether `event` may be received on an event stream: the filter of every stream.
    pub fn may_receive(&self, event: &str) -> bool {
        match self {
            Access::Open => true,
            Access::Anonymous(public) => Pattern::any(public, event),
            Access::Token(claims) => Pattern::any(&claims.broker.events, event),
        }
    }

    /// When the token expires, if there is one.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self {
            Access::Token(claims) => Some(UNIX_EPOCH + Duration::from_secs(claims.exp)),
            Access::Open | Access::Anonymous(_) => None,
        }
    }

    fn check(
        &self,
        event: &str,
        action: &str,
        scope: impl Fn(&Scopes) -> &Vec<Pattern>,
    ) -> Result<(), Refusal> {
        match self {
            Access::Open => Ok(()),
            Access::Anonymous(_) => Err(Refusal::MissingToken),
            Access::Token(claims) if Pattern::any(scope(&claims.broker), event) => Ok(()),
            Access::Token(_) => Err(insufficient_scope(action, event)),
        }
    }
}

/// The refusal of a valid token without the scope. The message names the event the client asked
/// for, and nothing about whether it exists.
fn insufficient_scope(action: &str, event: &str) -> Refusal {
    Refusal::InsufficientScope(format!("the token may not {action} the event {event:?}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Access;
    use crate::{Claims, Pattern, Refusal, Scopes};

    fn token(insert: &str, events: &str, audit: &str) -> Access {
        let patterns = |pattern: &str| vec![Pattern::new(pattern)];
        let broker =
            Scopes { insert: patterns(insert), events: patterns(events), audit: patterns(audit) };
        let claims =
            Claims { sub: None, exp: 0, nbf: None, iat: None, aud: None, iss: None, broker };
        Access::Token(Box::new(claims))
    }

    fn scope(message: &str) -> Result<(), Refusal> {
        Err(Refusal::InsufficientScope(message.to_owned()))
    }

    #[test]
    fn each_asker_gets_what_its_scopes_allow_and_the_refusal_names_the_event() {
        let access = token("a.*", "b.*", "c.*");
        assert_eq!(access.may_insert("a.1"), Ok(()));
        assert_eq!(access.may_insert("b.1"), scope(r#"the token may not insert the event "b.1""#));
        assert_eq!(access.may_subscribe("b.1"), Ok(()));
        assert_eq!(
            access.may_subscribe("a.1"),
            scope(r#"the token may not receive the event "a.1""#)
        );
        assert_eq!(access.may_audit("c.1"), Ok(()));
        assert_eq!(
            access.may_audit("a.1"),
            scope(r#"the token may not read the audit log of the event "a.1""#)
        );

        let anonymous = Access::Anonymous(Arc::new([Pattern::new("news")]));
        assert_eq!(anonymous.may_subscribe("news"), Ok(()));
        assert_eq!(anonymous.may_subscribe("secret"), Err(Refusal::MissingToken));
        assert_eq!(anonymous.may_audit("news"), Err(Refusal::MissingToken));
        assert_eq!(anonymous.require_token(), Err(Refusal::MissingToken));
        assert_eq!(anonymous.expires_at(), None);

        assert!(access.may_audit_every_event().is_err(), "c.* is not every event");
        assert_eq!(token("", "", "*").may_audit_every_event(), Ok(()));
        assert_eq!(anonymous.may_audit_every_event(), Err(Refusal::MissingToken));
        assert_eq!(Access::Open.may_audit_every_event(), Ok(()));

        let open = Access::Open;
        for result in [open.may_insert("x"), open.may_subscribe("x"), open.may_audit("x")] {
            assert_eq!(result, Ok(()));
        }
    }
}
