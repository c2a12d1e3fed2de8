export {
  type ChatMessage,
  contentText,
  demoScenario,
  loadScenario,
  PROMPT_PLACEHOLDER,
  type Reply,
  type Scenario,
  type ScenarioRule,
  type ScenarioStep,
  type Selection,
  selectReply,
  type ToolCallSpec,
  validateScenario,
} from "./scenario.ts";
export {
  AUXILIARY_REPLY,
  MODEL_ID,
  type RecordedRequest,
  type ScriptedModelServer,
  type StartOptions,
  startScriptedModel,
} from "./server.ts";
