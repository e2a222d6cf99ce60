// Contract: the config.json files of real checkpoints (their Hub 4.x form, values as published), for `matq bench scale`
// (synthetic checkpoints of real shapes) and the tests that read them: Llama 3.1 8B and 3.2 1B (llama3 rope), Qwen 2.5 7B,
// Gemma 2 9B, Mistral 7B v0.3, Phi-3 mini 4k.
using System.Text.Json.Nodes;

namespace Matq.Loading;

public static class RealConfigs
{
    public const string Llama31_8B = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
         "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
         "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
         "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.43.0.dev0",
         "use_cache": true, "vocab_size": 128256}
        """;

    public const string Llama32_1B = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
         "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
         "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
         "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
         "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
         "use_cache": true, "vocab_size": 128256}
        """;

    public const string Qwen25_7B = """
        {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
         "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944,
         "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
         "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
         "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
         "use_cache": true, "use_sliding_window": false, "vocab_size": 152064}
        """;

    public const string Gemma2_9B = """
        {"architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "attn_logit_softcapping": 50.0,
         "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1, "final_logit_softcapping": 30.0, "head_dim": 256,
         "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584, "initializer_range": 0.02,
         "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 16,
         "num_hidden_layers": 42, "num_key_value_heads": 8, "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
         "rope_theta": 10000.0, "sliding_window": 4096, "sliding_window_size": 4096, "torch_dtype": "float32",
         "transformers_version": "4.42.0.dev0", "use_cache": true, "vocab_size": 256000}
        """;

    public const string Mistral7B_v03 = """
        {"architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
         "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
         "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32,
         "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0", "use_cache": true,
         "vocab_size": 32768}
        """;

    public const string Phi3_Mini_4k = """
        {"architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
         "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02,
         "intermediate_size": 8192, "max_position_embeddings": 4096, "model_type": "phi3", "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096, "pad_token_id": 32000,
         "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0, "sliding_window": 2047,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.40.2", "use_cache": true,
         "vocab_size": 32064}
        """;

    /// <summary>Not a published model: Llama 3.2 1B's blocks (hidden 2048, 16 layers, intermediate 8192, 32/8 heads) with GPT-2's
    /// 50257-token vocabulary and an untied head, 1.18B parameters: the "synthetic 1.18B Llama" of issue 21's race tables.</summary>
    public const string Llama_1_18B_V50257 = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 50256,
         "eos_token_id": 50256, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
         "intermediate_size": 8192, "max_position_embeddings": 2048, "mlp_bias": false, "model_type": "llama",
         "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
         "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 50257}
        """;

    /// <summary>The shapes `matq bench scale --shape` accepts, with their config.json text.</summary>
    public static IReadOnlyList<(string Name, string Json)> Shapes { get; } =
    [
        ("llama-3.2-1b", Llama32_1B), ("llama-3.1-8b", Llama31_8B), ("qwen2.5-7b", Qwen25_7B), ("gemma-2-9b", Gemma2_9B), ("mistral-7b", Mistral7B_v03),
        ("llama-1.18b-v50257", Llama_1_18B_V50257),
    ];

    /// <summary>The config.json of shape <paramref name="name"/>, truncated to <paramref name="layers"/> decoder layers when given
    /// (the other values as published); one line naming the choices for an unknown name.</summary>
    public static string Config(string name, int? layers = null)
    {
        var json = Shapes.FirstOrDefault(s => s.Name == name).Json
            ?? throw new MatqException($"--shape {SafeText.Quote(name)} is not known: choose one of {string.Join(", ", Shapes.Select(s => s.Name))}");
        var o = JsonNode.Parse(json)!.AsObject();
        int published = (int)o["num_hidden_layers"]!;
        if (layers is int n)
        {
            if (n < 1 || n > published) throw new MatqException($"--layers {n} is out of range for {name}: 1..{published}");
            o["num_hidden_layers"] = n;
            if (o["max_window_layers"] is not null) o["max_window_layers"] = Math.Min(n, (int)o["max_window_layers"]!);
        }
        return o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }
}
