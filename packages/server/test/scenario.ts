import type { Scenario } from "@flotilla/scripted-model";

/** The scripted model's replies used across the server tests, keyed by words in the prompt. */
export const scenario: Scenario = {
  rules: [
    {
      match: "^write hello",
      steps: [
        { tool: "write", args: { filePath: "hello.txt", content: "hello from the agent\n" } },
        { text: "I wrote hello.txt for you." },
      ],
    },
    {
      match: "^edit readme",
      steps: [
        {
          tool: "edit",
          args: {
            filePath: "README.md",
            oldString: "# scratch",
            newString: "# scratch, edited by the agent",
          },
        },
        { text: "README edited." },
      ],
    },
    { match: "^remember the codeword", steps: [{ text: "Noted, I will remember it." }] },
    {
      match: "^what was the codeword",
      steps: [{ recall: "codeword is (\\w+)", template: "The codeword was $1." }],
    },
    { match: "^hang", steps: [{ hang: true, text: "Working on it" }] },
    {
      match: "^slow",
      steps: [
        {
          text: "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen",
          chunkDelayMs: 250,
        },
      ],
    },
    { match: "^fail auth", steps: [{ error: { status: 401, message: "invalid api key" } }] },
    {
      match: "^run a command",
      steps: [
        { tool: "bash", args: { command: "echo from-bash > bash.txt", description: "write a file" } },
        { text: "Ran it." },
      ],
    },
    {
      match: "^what did they say",
      steps: [{ recall: "(?:rejected|reject)[^\\n]*?: (.+)", template: "They said: $1" }],
    },
  ],
  default: [{ text: "Hello from the scripted model." }],
};
