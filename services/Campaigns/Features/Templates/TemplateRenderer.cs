using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.RegularExpressions;
using Crm.BuildingBlocks.Errors;
using Fluid;
using Fluid.Values;
using Microsoft.Extensions.FileProviders;

namespace Crm.Campaigns.Features.Templates;

/// <summary>
/// Liquid through Fluid, locked down: no file system (include/render find nothing), no .NET member access
/// (the model is plain Fluid dictionaries and values, so nothing but what <see cref="TemplateModel"/> puts
/// there is reachable), a step limit against loops, a recursion limit, and an output limit per part.
/// HTML parts are rendered with the HTML encoder, so a value is encoded unless the template says <c>| raw</c>.
/// </summary>
public static partial class TemplateRenderer
{
    public const int MaxSourceLength = 64 * 1024;
    public const int MaxSteps = 20_000;
    public const int MaxOutputLength = 256 * 1024;

    private static readonly FluidParser Parser = new();

    // Encodes what HTML gives meaning to (< > & " '), not every non-ASCII letter: Korean stays readable.
    private static readonly HtmlEncoder Html = HtmlEncoder.Create(System.Text.Unicode.UnicodeRanges.All);

    private static readonly TemplateOptions Options = new()
    {
        MaxSteps = MaxSteps,
        MaxRecursion = 20,
        FileProvider = new NullFileProvider(),
        MemberAccessStrategy = new DefaultMemberAccessStrategy(), // nothing registered: no .NET object is readable
        CultureInfo = CultureInfo.InvariantCulture,
        TimeZone = TimeZoneInfo.Utc,
    };

    /// <summary>Parses one part; a part that does not parse adds a violation naming the field, line and column.</summary>
    public static IFluidTemplate? Parse(string source, string field, Validation v)
    {
        if (source.Length > MaxSourceLength)
        {
            v.Add(field, $"is longer than {MaxSourceLength} characters");
            return null;
        }
        if (Parser.TryParse(source, out var template, out var error)) return template;
        v.Add(field, Describe(error));
        return null;
    }

    /// <summary>"line 3, column 7: ..." from Fluid's "... at (3:7)".</summary>
    public static string Describe(string error)
    {
        var m = Position().Match(error);
        if (!m.Success) return $"does not parse: {error}";
        var message = error[..m.Index].TrimEnd().TrimEnd(',');
        return $"does not parse at line {m.Groups[1].Value}, column {m.Groups[2].Value}: {message}";
    }

    [GeneratedRegex(@"at \((\d+):(\d+)\)")]
    private static partial Regex Position();

    /// <summary>Renders with the model; HTML parts encode every value unless <c>| raw</c>.</summary>
    /// <exception cref="TemplateRenderException">A limit was reached or the template failed at run time.</exception>
    public static async ValueTask<string> RenderAsync(IFluidTemplate template, IReadOnlyDictionary<string, FluidValue> model, bool html)
    {
        var context = new TemplateContext(Options);
        foreach (var (name, value) in model) context.SetValue(name, value);
        await using var writer = new BoundedWriter(MaxOutputLength);
        try
        {
            await template.RenderAsync(writer, context, html ? Html : NullEncoder.Default);
        }
        catch (OutputTooLongException)
        {
            throw new TemplateRenderException($"renders more than {MaxOutputLength} characters");
        }
        catch (InvalidOperationException e) when (e.Message.Contains("maximum", StringComparison.OrdinalIgnoreCase))
        {
            throw new TemplateRenderException($"takes more than {MaxSteps} steps (a loop too long?)");
        }
        catch (ParseException e)
        {
            throw new TemplateRenderException(e.Message);
        }
        return writer.ToString();
    }

    private sealed class OutputTooLongException : Exception;

    /// <summary>A string writer that refuses to grow past a limit.</summary>
    private sealed class BoundedWriter(int limit) : StringWriter(CultureInfo.InvariantCulture)
    {
        public override void Write(char value)
        {
            Check(1);
            base.Write(value);
        }

        public override void Write(string? value)
        {
            Check(value?.Length ?? 0);
            base.Write(value);
        }

        public override void Write(char[] buffer, int index, int count)
        {
            Check(count);
            base.Write(buffer, index, count);
        }

        public override void Write(ReadOnlySpan<char> buffer)
        {
            Check(buffer.Length);
            base.Write(buffer);
        }

        public override Task WriteAsync(string? value)
        {
            Write(value);
            return Task.CompletedTask;
        }

        public override Task WriteAsync(char value)
        {
            Write(value);
            return Task.CompletedTask;
        }

        public override Task WriteAsync(ReadOnlyMemory<char> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return Task.CompletedTask;
        }

        private void Check(int adding)
        {
            if (GetStringBuilder().Length + adding > limit) throw new OutputTooLongException();
        }

        public override Encoding Encoding => Encoding.UTF8;
    }
}

/// <summary>A template that parsed but could not be rendered for one contact (a limit, a run-time error).</summary>
public sealed class TemplateRenderException(string message) : Exception(message);
