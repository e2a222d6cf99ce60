// The config.json files of real checkpoints users hold (their Hub 4.x form, values as published), read by matq: each
// parses, and matq's description gives the published parameter count and the family features — Llama 3.1 8B and 3.2 1B
// (llama3 rope), Qwen 2.5 7B (q/k/v bias, sliding_window present but off), Gemma 2 9B (soft-caps, alternating windows,
// query_pre_attn_scalar, tied), Mistral 7B v0.3 (no window), Phi-3 mini 4k (fused projections, window 2047).
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;

namespace Matq.Tests.Loading;

public sealed class RealConfigsTests
{
    private const string Llama31_8B = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
         "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
         "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
         "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.43.0.dev0",
         "use_cache": true, "vocab_size": 128256}
        """;

    private const string Llama32_1B = """
        {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
         "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
         "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
         "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
         "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
         "use_cache": true, "vocab_size": 128256}
        """;

    private const string Qwen25_7B = """
        {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
         "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944,
         "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
         "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
         "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
         "use_cache": true, "use_sliding_window": false, "vocab_size": 152064}
        """;

    private const string Gemma2_9B = """
        {"architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "attn_logit_softcapping": 50.0,
         "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1, "final_logit_softcapping": 30.0, "head_dim": 256,
         "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584, "initializer_range": 0.02,
         "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 16,
         "num_hidden_layers": 42, "num_key_value_heads": 8, "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
         "rope_theta": 10000.0, "sliding_window": 4096, "sliding_window_size": 4096, "torch_dtype": "float32",
         "transformers_version": "4.42.0.dev0", "use_cache": true, "vocab_size": 256000}
        """;

    private const string Mistral7B_v03 = """
        {"architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
         "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
         "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32,
         "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0", "use_cache": true,
         "vocab_size": 32768}
        """;

    private const string Phi3_Mini_4k = """
        {"architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
         "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02,
         "intermediate_size": 8192, "max_position_embeddings": 4096, "model_type": "phi3", "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096, "pad_token_id": 32000,
         "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0, "sliding_window": 2047,
         "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.40.2", "use_cache": true,
         "vocab_size": 32064}
        """;

    public static TheoryData<string, string, long> Configs() => new()
    {
        { "Llama-3.1-8B", Llama31_8B, 8_030_261_248 },
        { "Llama-3.2-1B", Llama32_1B, 1_235_814_400 },
        { "Qwen2.5-7B", Qwen25_7B, 7_615_616_512 },
        { "gemma-2-9b", Gemma2_9B, 9_241_705_984 },
        { "Mistral-7B-v0.3", Mistral7B_v03, 7_248_023_552 },
        { "Phi-3-mini-4k", Phi3_Mini_4k, 3_821_079_552 },
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void Real_configs_parse_to_their_published_parameter_counts(string name, string json, long parameters)
    {
        var c = HfLlamaConfig.Parse(json, name + "/config.json");
        Assert.Equal(parameters, c.ParameterCount());
        // the description round-trips through the artifact's model_config
        Assert.True(c.Equals(HfLlamaConfig.Parse(HfLlamaConfig.ToJson(c), name)), name);
        switch (name)
        {
            case "Llama-3.1-8B" or "Llama-3.2-1B":
                Assert.Equal(RopeScaling.Llama3, c.RopeScaling);
                Assert.Null(c.SlidingWindow);
                break;
            case "Qwen2.5-7B":
                Assert.True(c.QkvBias);
                Assert.Null(c.WindowOf(0));   // use_sliding_window false
                break;
            case "gemma-2-9b":
                Assert.Equal(4096, c.WindowOf(0));
                Assert.Null(c.WindowOf(1));   // alternating local/global
                Assert.Equal(50.0, c.AttnLogitSoftcap);
                Assert.Equal(30.0, c.FinalLogitSoftcap);
                Assert.True(c.TieWordEmbeddings);
                break;
            case "Mistral-7B-v0.3":
                Assert.Null(c.SlidingWindow);
                break;
            case "Phi-3-mini-4k":
                Assert.Equal(2047, c.WindowOf(0));
                break;
        }
    }
}
