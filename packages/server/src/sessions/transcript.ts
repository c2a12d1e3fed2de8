import { emptyTranscript, fold, type Message, messagesOf, type SessionEvent } from "@flotilla/contracts";

/** The conversation as messages and parts: the web UI's fold over the whole log, seen as the API's messages. */
export const transcript = (events: SessionEvent[]): Message[] => messagesOf(fold(emptyTranscript, events));
