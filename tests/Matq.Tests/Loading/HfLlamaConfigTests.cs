// config.json parsing: both fixtures, both rope forms, defaults, refusals naming the field, and write -> read identity.
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Tests.Models;

namespace Matq.Tests.Loading;

public class HfLlamaConfigTests
{
    private const string Minimal = """
        {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "vocab_size": 100 %EXTRA%}
        """;

    private static LlamaConfig ParseWith(string extra) => HfLlamaConfig.Parse(Minimal.Replace("%EXTRA%", extra));

    [Fact]
    public void ReadsTinyLlama()
    {
        var c = HfLlamaConfig.Read(HfFixtures.Path("tiny-llama"));
        Assert.Equal(LlamaFamily.Llama, c.Family);
        Assert.Equal((64, 176, 2, 4, 2, 16, 384), (c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads, c.NumKvHeads, c.HeadDim, c.VocabSize));
        Assert.False(c.TieWordEmbeddings);
        Assert.False(c.QkvBias);
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal(RopeScaling.Default, c.RopeScaling);
        Assert.Equal("1", c.Extra["bos_token_id"]);
    }

    [Fact]
    public void ReadsTinyQwen2()
    {
        var c = HfLlamaConfig.Read(HfFixtures.Path("tiny-qwen2"));
        Assert.Equal(LlamaFamily.Qwen2, c.Family);
        Assert.True(c.TieWordEmbeddings);
        Assert.True(c.QkvBias);
        Assert.False(c.OutputBias);
        Assert.Equal(16, c.HeadDim); // 96 / 6
        Assert.Equal(1e6, c.RopeTheta);
        Assert.Null(c.SlidingWindow);
    }

    [Fact]
    public void DefaultsFollowHf()
    {
        var c = ParseWith("");
        Assert.Equal(4, c.NumKvHeads);
        Assert.Equal(16, c.HeadDim);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.False(c.TieWordEmbeddings);
    }

    [Fact]
    public void OldRopeFormWithLinearScaling()
    {
        var c = ParseWith(""", "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 4.0}""");
        Assert.Equal(500000.0, c.RopeTheta);
        Assert.Equal(RopeScaling.Linear, c.RopeScaling);
        Assert.Equal(4.0, c.RopeFactor);
    }

    [Fact]
    public void NewRopeFormWithLinearScaling()
    {
        var c = ParseWith(""", "rope_parameters": {"rope_theta": 1000.0, "rope_type": "linear", "factor": 2.0}""");
        Assert.Equal((1000.0, RopeScaling.Linear, 2.0), (c.RopeTheta, c.RopeScaling, c.RopeFactor));
    }

    [Theory]
    [InlineData(""", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}""", "yarn")]
    [InlineData(""", "rope_scaling": {"type": "dynamic", "factor": 2.0}""", "dynamic")]
    public void UnsupportedRopeTypesAreRefused(string extra, string type)
    {
        var e = Assert.Throws<MatqException>(() => ParseWith(extra));
        Assert.Equal($"rope type '{type}' in config.json is not supported (supported: default, linear, llama3)", e.Message);
    }

    [Theory]
    [InlineData(""", "rope_theta": 500000.0, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}""",
        "config.json: rope_theta 500000.0 contradicts rope_parameters.rope_theta 10000.0;")]
    [InlineData(""", "rope_scaling": {"type": "linear", "factor": 4.0}, "rope_parameters": {"rope_theta": 1e4, "rope_type": "default"}""",
        "config.json: rope_scaling.type \"linear\" contradicts rope_parameters.rope_type \"default\";")]
    [InlineData(""", "rope_scaling": {"rope_type": "linear", "factor": 4.0}, "rope_parameters": {"rope_theta": 1e4}""",
        "config.json: rope_scaling.rope_type \"linear\" contradicts rope_parameters.rope_type \"default\" (absent: the default rope);")]
    [InlineData(""", "rope_scaling": {"rope_type": "linear", "factor": 4.0}, "rope_parameters": {"rope_theta": 1e4, "rope_type": "linear", "factor": 2.0}""",
        "config.json: rope_scaling.factor 4.0 contradicts rope_parameters.factor 2.0;")]
    public void BothRopeFormsWithDifferentValuesAreRefused(string extra, string start)
    {
        var e = Assert.Throws<MatqException>(() => ParseWith(extra));
        Assert.StartsWith(start, e.Message);
        Assert.EndsWith("with different values: remove one of them (or make them equal)", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void BothRopeFormsWithEqualValuesAreRead()
    {
        var c = ParseWith(""", "rope_theta": 500000, "rope_scaling": {"type": "linear", "rope_type": "linear", "factor": 4}, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "linear", "factor": 4.0}""");
        Assert.Equal((500000.0, RopeScaling.Linear, 4.0), (c.RopeTheta, c.RopeScaling, c.RopeFactor));
        // 4.x's "no scaling" (null) next to 5.x's default rope, as ToJson writes them
        c = ParseWith(""", "rope_theta": 1000.0, "rope_scaling": null, "rope_parameters": {"rope_theta": 1000.0, "rope_type": "default"}""");
        Assert.Equal((1000.0, RopeScaling.Default), (c.RopeTheta, c.RopeScaling));
    }

    [Fact]
    public void AContradictionNamesTheFileItWasReadFrom()
    {
        var dir = Directory.CreateTempSubdirectory("matq-config-").FullName;
        try
        {
            var path = Path.Combine(dir, HfLlamaConfig.FileName);
            File.WriteAllText(path, Minimal.Replace("%EXTRA%", """, "rope_theta": 1.0, "rope_parameters": {"rope_theta": 2.0}"""));
            var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Read(dir));
            Assert.StartsWith($"{path}: rope_theta 1.0 contradicts rope_parameters.rope_theta 2.0;", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("num_attention_heads")]
    [InlineData("vocab_size")]
    public void MissingRequiredFieldIsNamed(string field)
    {
        var o = System.Text.Json.Nodes.JsonNode.Parse(Minimal.Replace("%EXTRA%", ""))!.AsObject();
        o.Remove(field);
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(o.ToJsonString()));
        Assert.Contains($"missing required field '{field}'", e.Message);
    }

    [Theory]
    [InlineData("""{"model_type": "gpt2"}""", "model_type 'gpt2' is not a Llama-family decoder")]
    [InlineData("""{"model_type": "llama", "architectures": ["BertModel"]}""", "architectures 'BertModel' is not a Llama-family decoder")]
    public void NonLlamaArchitecturesAreRefused(string json, string message)
    {
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(json));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("hidden_act", "\"gelu\"", "hidden_act 'gelu'")]
    [InlineData("num_key_value_heads", "3", "num_key_value_heads 3 must divide num_attention_heads 4")]
    [InlineData("head_dim", "15", "head_dim 15 must be even")]
    [InlineData("hidden_size", "\"big\"", "field 'hidden_size' must be an integer")]
    [InlineData("rms_norm_eps", "0", "rms_norm_eps 0 must be")]
    [InlineData("tie_word_embeddings", "1", "field 'tie_word_embeddings' must be true or false")]
    public void BadValuesAreNamed(string field, string value, string message)
    {
        var o = System.Text.Json.Nodes.JsonNode.Parse(Minimal.Replace("%EXTRA%", ""))!.AsObject();
        o[field] = System.Text.Json.Nodes.JsonNode.Parse(value);
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(o.ToJsonString()));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void DuplicateKeysAreRefused()
    {
        var e = Assert.Throws<MatqException>(() => ParseWith(""", "hidden_size": 32"""));
        Assert.Contains("hidden_size", e.Message);
    }

    [Fact]
    public void MistralSlidingWindowShorterThanContextIsKept()
    {
        var c = HfLlamaConfig.Parse(Minimal.Replace("\"llama\"", "\"mistral\"").Replace("%EXTRA%", """, "sliding_window": 32, "max_position_embeddings": 128"""));
        Assert.Equal(32, c.SlidingWindow);
        var wide = HfLlamaConfig.Parse(Minimal.Replace("\"llama\"", "\"mistral\"").Replace("%EXTRA%", """, "sliding_window": 4096, "max_position_embeddings": 128"""));
        Assert.Null(wide.SlidingWindow);
    }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    public void WriteThenReadIsIdentity(string fixture)
    {
        var c = HfLlamaConfig.Read(HfFixtures.Path(fixture));
        Assert.Equal(c, HfLlamaConfig.Parse(HfLlamaConfig.ToJson(c)));
        var linear = ParseWith(""", "rope_scaling": {"type": "linear", "factor": 4.0}, "attention_bias": true, "mlp_bias": true""");
        Assert.Equal(linear, HfLlamaConfig.Parse(HfLlamaConfig.ToJson(linear)));
    }
}
