namespace Crm.BuildingBlocks.Errors;

// Domain errors that the error-mapping interceptor turns into gRPC status codes.

/// <summary>Bad input: INVALID_ARGUMENT with a google.rpc.BadRequest field violation per field.</summary>
public sealed class InvalidArgumentException : Exception
{
    public InvalidArgumentException(string field, string description)
        : this([new FieldViolation(field, description)]) { }

    public InvalidArgumentException(IReadOnlyList<FieldViolation> violations)
        : base(string.Join("; ", violations.Select(v => $"{v.Field}: {v.Description}")))
    {
        Violations = violations;
    }

    public IReadOnlyList<FieldViolation> Violations { get; }
}

public sealed record FieldViolation(string Field, string Description);

/// <summary>NOT_FOUND.</summary>
public sealed class NotFoundException(string message) : Exception(message);

/// <summary>ALREADY_EXISTS.</summary>
public sealed class AlreadyExistsException(string message) : Exception(message);

/// <summary>FAILED_PRECONDITION.</summary>
public sealed class FailedPreconditionException(string message) : Exception(message);

/// <summary>Collects every field violation of a request before failing once.</summary>
public sealed class Validation
{
    private readonly List<FieldViolation> _violations = [];

    public Validation Add(string field, string description)
    {
        _violations.Add(new FieldViolation(field, description));
        return this;
    }

    public bool IsValid => _violations.Count == 0;

    public IReadOnlyList<FieldViolation> Violations => _violations;

    public void ThrowIfInvalid()
    {
        if (_violations.Count > 0) throw new InvalidArgumentException(_violations.ToArray());
    }
}
