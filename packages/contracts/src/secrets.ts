import { z } from "@hono/zod-openapi";

export const CreateSecretBody = z
  .object({
    name: z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]{0,127}$/,
        "letters, digits and _, not starting with a digit (like an environment variable)",
      )
      .openapi({
        description:
          "Like an environment variable. An org secret named as a provider's key variable (ANTHROPIC_API_KEY, a provider's apiKeyEnv) is that provider's key; a project's, the key for that project's calls. (Webhook signing secrets are kept here too, as webhook.<id> and webhook.org.)",
      }),
    value: z.string().min(1).max(65_536).openapi({ description: "Stored encrypted; never returned" }),
    projectId: z
      .string()
      .min(1)
      .max(100)
      .optional()
      .openapi({ description: "Scope it to one project (default: the org)" }),
  })
  .strict()
  .openapi("CreateSecret");
export type CreateSecretBody = z.infer<typeof CreateSecretBody>;

export const SecretInfo = z
  .object({
    id: z.string(),
    name: z.string(),
    scope: z.enum(["org", "project"]),
    projectId: z.string().nullable(),
    keyId: z
      .string()
      .openapi({ description: "The master key its data key is wrapped with (an id, not the key)" }),
    createdAt: z.string(),
    updatedAt: z.string(),
    lastUsedAt: z.string().nullable(),
  })
  .openapi("SecretInfo");
export type SecretInfo = z.infer<typeof SecretInfo>;

export const RotatedMasterKey = z
  .object({ keyId: z.string(), rewrapped: z.number().int() })
  .openapi("RotatedMasterKey");
export type RotatedMasterKey = z.infer<typeof RotatedMasterKey>;
