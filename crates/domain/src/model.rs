//! The closed vocabularies of the contract: statuses, states, node types and call outcomes.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages.
            pub fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        // Written by hand: the derive cannot see names passed through this macro.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
                ObjectBuilder::new().schema_type(SchemaType::new(Type::String)).enum_values(Some([$($text),+])).into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Lifecycle of a workflow (API.md section 2).
    WorkflowStatus { Draft = "draft", Active = "active", Paused = "paused", Completed = "completed", Cancelled = "cancelled" }
);

impl WorkflowStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// Parses a list filter value; `running` is the reference's legacy alias of `active`.
    pub fn parse_filter(text: &str) -> Option<Self> {
        if text == "running" {
            Some(Self::Active)
        } else {
            Self::parse(text)
        }
    }
}

string_enum!(
    /// Status of an enrolled lead (API.md section 5).
    LeadStatus { Pending = "pending", InProgress = "in_progress", Completed = "completed", Dropped = "dropped", Removed = "removed", Failed = "failed" }
);

impl LeadStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }

    /// Parses a list filter value; `active` is the reference's alias of `in_progress`.
    pub fn parse_filter(text: &str) -> Option<Self> {
        if text == "active" {
            Some(Self::InProgress)
        } else {
            Self::parse(text)
        }
    }
}

string_enum!(
    /// What an `in_progress` lead is doing.
    LeadState { Ready = "ready", Running = "running", Calling = "calling", Waiting = "waiting", OutsideHours = "outside_hours", Throttled = "throttled", Stalled = "stalled", Paused = "paused" }
);

impl LeadState {
    /// A step is executing: it finishes even when the workflow is paused or cancelled.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Running | Self::Calling)
    }
}

string_enum!(
    NodeType { VoiceCall = "VOICE_CALL", Time = "TIME", Conditional = "CONDITIONAL", Application = "APPLICATION", Converted = "CONVERTED", Dropped = "DROPPED" }
);

impl NodeType {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Converted | Self::Dropped)
    }
}

string_enum!(
    /// Outcome of a VOICE_CALL step (one attempt or the node).
    CallOutcome { Completed = "COMPLETED", NoAnswer = "NO_ANSWER", Busy = "BUSY", Voicemail = "VOICEMAIL", Failed = "FAILED" }
);

impl CallOutcome {
    pub fn parse_loose(text: &str) -> Option<Self> {
        Self::parse(&text.trim().to_ascii_uppercase())
    }

    /// The final call status this outcome is recorded as.
    pub fn call_status(self) -> CallStatus {
        match self {
            Self::Completed => CallStatus::Completed,
            Self::NoAnswer => CallStatus::NoAnswer,
            Self::Busy => CallStatus::Busy,
            Self::Voicemail => CallStatus::Voicemail,
            Self::Failed => CallStatus::Failed,
        }
    }

    /// "Did not pick up": the outcomes a `DNP` edge label matches.
    pub fn is_dnp(self) -> bool {
        matches!(self, Self::NoAnswer | Self::Busy | Self::Voicemail)
    }
}

string_enum!(
    CallStatus { Queued = "queued", Initiated = "initiated", Ringing = "ringing", InProgress = "in_progress", Completed = "completed", NoAnswer = "no_answer", Busy = "busy", Voicemail = "voicemail", Failed = "failed", Cancelled = "cancelled" }
);

string_enum!(
    /// Status of one lead history entry.
    StepStatus { Running = "running", Waiting = "waiting", Completed = "completed", Failed = "failed", Skipped = "skipped" }
);

string_enum!(
    /// Whether leads may be enrolled again after an earlier enrolment of the same number.
    Reenrollment { Never = "never", AfterExit = "after_exit" }
);
